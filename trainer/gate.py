"""The promotion gate: a candidate model replaces the current one only if it is not worse.

Both models run the same held-out tasks (MBPP's validation split, the user's own
held-out session tasks, and with `humaneval` HumanEval) through the eval harness
(`evals.runner.run_suite`), each task scored on two metrics:

- pass@1: the first attempt passes;
- pass within turns: the repair loop passes within the turn budget.

For each metric the report gives both rates with 95% Wilson intervals and the paired
difference (candidate - current) with a 95% paired-bootstrap interval and McNemar's exact
p-value. When the tasks span several suites, each suite's two metrics are compared too,
as guards: a pooled gain must not hide a loss on one suite (SFT on MBPP's style was
measured at -4/90 on MBPP and -19/164 on HumanEval). The rule (also printed in the report):

1. refused if the candidate is worse beyond noise on either metric, pooled or within any
   one suite (the interval of the difference lies entirely below 0);
2. refused if it is not better: the two pooled differences do not add up to a gain;
3. with `require_significant`, refused unless one pooled metric's gain is beyond noise;
4. otherwise promoted (`Registry.set_active`). A refused candidate stays registered but
   inactive; `fixloop models use VERSION` switches to it anyway, or back.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from agent.errors import FixloopError
from agent.models import Registry
from evals.metrics import compliance_metric

if TYPE_CHECKING:
    from agent.backends.base import Backend
    from agent.config import Settings
    from agent.events import Task
    from agent.preferences import Preference
    from evals.results import SuiteResult

BOOTSTRAP_SAMPLES = 4000
FEW_TASKS = 30  # below this, the report warns that only large differences can show


class GateError(FixloopError, ValueError):
    """A gate that cannot run as asked; the message says what to do."""


class MetricComparison(BaseModel):
    metric: str  # "pass@1", "pass within N turns", "follows: PREFERENCE", or "SUITE: pass@1"
    current: str  # e.g. "12/30 40.0% [24.6-57.7]"
    candidate: str
    current_rate: float
    candidate_rate: float
    current_ci95: tuple[float, float] = (0.0, 0.0)  # Wilson interval of each rate
    candidate_ci95: tuple[float, float] = (0.0, 0.0)
    diff: float  # candidate - current
    ci95: tuple[float, float]  # paired bootstrap interval of diff
    mcnemar_p: float
    only_candidate: list[str]  # tasks the candidate passes and the current model fails
    only_current: list[str]
    guard: bool = False  # one suite's share: it can refuse a candidate, not count as its gain

    @property
    def worse_beyond_noise(self) -> bool:
        return self.ci95[1] < 0

    @property
    def better_beyond_noise(self) -> bool:
        return self.ci95[0] > 0


class GateReport(BaseModel):
    candidate: str
    current: str
    tasks: int
    suites: dict[str, int]  # suite -> number of tasks
    max_turns: int
    metrics: list[MetricComparison]
    promoted: bool
    reasons: list[str]
    rule: str
    out_dir: str
    created: str = Field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def table(self) -> str:
        """The before/after table (Markdown)."""
        lines = [
            f"| metric | current ({self.current}) | candidate ({self.candidate}) "
            "| difference [95% CI] | McNemar p |",
            "|---|---|---|---|---|",
        ]
        for m in self.metrics:
            lo, hi = m.ci95
            lines.append(
                f"| {m.metric} | {m.current} | {m.candidate} | {100 * m.diff:+.1f} pts "
                f"[{100 * lo:+.1f}, {100 * hi:+.1f}] | {m.mcnemar_p:.3g} |"
            )
        return "\n".join(lines)

    def flips(self) -> str:
        """What the candidate gained and lost, task by task, per metric."""
        lines = []
        for m in self.metrics:
            if m.guard:  # the pooled rows already list every task
                continue
            gained = ", ".join(sorted(m.only_candidate)) or "none"
            lost = ", ".join(sorted(m.only_current)) or "none"
            lines.append(f"- {m.metric}: gained {gained}; lost {lost}")
        return "\n".join(lines)

    def markdown(self) -> str:
        verdict = "PROMOTED (now the default model)" if self.promoted else "NOT promoted"
        suites = ", ".join(f"{k}: {v}" for k, v in self.suites.items())
        return (
            f"# Gate: {self.candidate} vs {self.current}\n\n"
            f"{self.tasks} held-out tasks ({suites}), up to {self.max_turns} turns each.\n\n"
            f"{self.table()}\n\n{self.flips()}\n\n**{verdict}**\n\n"
            + "\n".join(f"- {r}" for r in self.reasons)
            + f"\n\nRule: {self.rule}\n"
        )


RULE = (
    "promote only if the candidate is not worse beyond noise on pass@1 nor on pass within "
    "turns (95% paired-bootstrap interval of the difference not entirely below 0), pooled "
    "and, when the tasks span several suites, within each suite, and the two pooled "
    "differences add up to a gain."
)


def paired_bootstrap_ci(
    diffs: Sequence[int], *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of the mean of per-task differences (-1, 0, +1), resampled."""
    n = len(diffs)
    if n == 0:
        return (-1.0, 1.0)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(samples))
    return (means[int(0.025 * samples)], means[min(samples - 1, int(0.975 * samples))])


def compare_metric(
    name: str, current: SuiteResult, candidate: SuiteResult, *, first_attempt: bool
) -> MetricComparison:
    """Pass rates (first attempt, or within the turn budget), task by task."""
    cur = current.task_passed(first_attempt=first_attempt)
    return compare_tasks(name, cur, candidate.task_passed(first_attempt=first_attempt))


def compare_tasks(
    name: str, cur: dict[str, bool], cand: dict[str, bool], *, guard: bool = False
) -> MetricComparison:
    """Any per-task yes/no metric of the current model and the candidate, paired."""
    from evals.metrics import binomial_rate, paired_comparison

    pc = paired_comparison(cand, cur)
    shared = [t for t in cand if t in cur]
    diffs = [int(cand[t]) - int(cur[t]) for t in shared]
    n = len(shared)
    cur_rate = binomial_rate(sum(cur[t] for t in shared), n)
    cand_rate = binomial_rate(sum(cand[t] for t in shared), n)
    return MetricComparison(
        metric=name,
        current=cur_rate.short(),
        candidate=cand_rate.short(),
        current_rate=cur_rate.rate,
        candidate_rate=cand_rate.rate,
        current_ci95=(cur_rate.low, cur_rate.high),
        candidate_ci95=(cand_rate.low, cand_rate.high),
        diff=(sum(diffs) / n) if n else 0.0,
        ci95=paired_bootstrap_ci(diffs),
        mcnemar_p=pc.p_value,
        only_candidate=pc.only_a,
        only_current=pc.only_b,
        guard=guard,
    )


def suite_of(task: Task) -> str:
    return task.suite or "custom"


def suite_guards(
    tasks: Sequence[Task], current: SuiteResult, candidate: SuiteResult, within: str
) -> list[MetricComparison]:
    """Each suite's pass@1 and pass-within-turns comparison, when `tasks` span 2+ suites."""
    by_suite: dict[str, set[str]] = {}
    for t in tasks:
        by_suite.setdefault(suite_of(t), set()).add(t.task_id)
    if len(by_suite) < 2:
        return []
    guards = []
    for suite, ids in by_suite.items():
        for name, first in (("pass@1", True), (within, False)):
            cur, cand = current.task_passed(first), candidate.task_passed(first)
            guards.append(
                compare_tasks(
                    f"{suite}: {name}",
                    {t: ok for t, ok in cur.items() if t in ids},
                    {t: ok for t, ok in cand.items() if t in ids},
                    guard=True,
                )
            )
    return guards


def decide(
    metrics: Sequence[MetricComparison], *, require_significant: bool = False
) -> tuple[bool, list[str]]:
    """Apply the rule; (promote?, the reasons in words). Guards can only refuse."""
    reasons: list[str] = []
    pooled = [m for m in metrics if not m.guard]
    worse = [m for m in metrics if m.worse_beyond_noise]
    for m in worse:
        lo, hi = m.ci95
        reasons.append(
            f"worse on {m.metric} beyond noise: {100 * m.diff:+.1f} pts, "
            f"95% CI [{100 * lo:+.1f}, {100 * hi:+.1f}] lies below 0"
        )
    gain = sum(m.diff for m in pooled)
    if not worse and gain <= 0:
        reasons.append(
            "no gain: "
            + ", ".join(f"{m.metric} {100 * m.diff:+.1f} pts" for m in pooled)
            + "; nothing to switch for"
        )
    significant = any(m.better_beyond_noise for m in pooled)
    if require_significant and not worse and gain > 0 and not significant:
        reasons.append("the gain is within noise (required: beyond noise on one metric)")
    promote = not reasons
    if promote:
        for m in pooled:
            note = "beyond noise" if m.better_beyond_noise else "within noise"
            reasons.append(f"{m.metric}: {100 * m.diff:+.1f} pts ({note})")
    return promote, reasons


def gate_tasks(
    *,
    sessions_dir: Path | None,
    mbpp_split: str = "validation",
    limit: int | None = None,
    include_sessions: bool = True,
    humaneval: bool = False,
) -> list[Task]:
    """MBPP's held-out split, with `humaneval` HumanEval, and the user's held-out session
    tasks; `limit`: the first N tasks of each."""
    from evals.suites import load_humaneval, load_mbpp, load_sessions

    tasks = load_mbpp(mbpp_split)[:limit]
    if humaneval:
        tasks += load_humaneval()[:limit]
    if include_sessions and sessions_dir is not None and sessions_dir.is_dir():
        own = load_sessions(sessions_dir)
        tasks += own[:limit] if limit is not None else own
    return tasks


BackendFactory = Callable[[str], "Backend | None"]


def _finished_episodes(out_dir: Path, label: str, tasks: Sequence[Task]) -> int:
    """How many of `tasks` already have an episode of `label` in `out_dir`."""
    from evals.results_file import read_results, results_path

    _, records = read_results(results_path(out_dir, label))
    wanted = {t.task_id for t in tasks}
    return len({r.task_id for r in records if r.task_id in wanted})


@dataclass(frozen=True)
class GateResult:
    report: GateReport
    current: SuiteResult
    candidate: SuiteResult


def run_gate(
    candidate: str,
    *,
    settings: Settings,
    tasks: Sequence[Task],
    current: str | None = None,
    max_turns: int | None = None,
    out_dir: Path | None = None,
    workers: int = 1,
    promote: bool = True,
    require_significant: bool = False,
    backend_for: BackendFactory | None = None,
    progress: bool = True,
    preferences: Sequence[Preference] = (),
    reuse: bool = True,
) -> GateResult:
    """Evaluate current and candidate on `tasks`, decide, promote or not, write the report.

    `preferences` (a preference round's candidate): both models are told them and each one's
    compliance of the first program is a metric beside the pass rates (the rule weighs it
    like them). With `reuse`, each model's episodes are kept under the data directory's
    `gate/episodes/`, keyed by its weights, the settings and the episode code
    (`evals.episode_cache`), and read back by a later gate: the current model of a retrain
    is evaluated once, not on every retrain."""
    from evals.episode_cache import episodes_dir
    from evals.runner import run_suite

    registry = Registry(settings.data_dir)
    spec = registry.get(candidate)
    current = current or registry.active() or settings.model
    if current == candidate:
        raise GateError(
            f"{candidate!r} is already the current model; compare it with another (--current NAME)."
        )
    registry.get(current)
    if not tasks:
        raise GateError("no held-out tasks to evaluate on.")
    turns = max_turns or settings.max_turns
    out = out_dir or settings.data_dir / "gate" / candidate
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, SuiteResult] = {}
    reused: dict[str, int] = {}
    pref_names = [f"{p.id} v{p.current.version}" for p in preferences]
    for name in (current, candidate):
        model_settings = settings.model_copy(
            update={"model": name, "adapter": None, "base_url": None}
        )
        episode_settings = model_settings.model_copy(
            update={"max_turns": turns, "temperature": 0.0, "seed": 0}
        )
        model_out = out
        if reuse:
            model_out = episodes_dir(
                settings.data_dir / "gate" / "episodes",
                registry.get(name),
                episode_settings,
                pref_names,
            )
        reused[name] = _finished_episodes(model_out, name, tasks)
        results[name] = run_suite(
            list(tasks),
            model_settings,
            max_turns=turns,
            temperature=0.0,
            seed=0,
            out_dir=model_out,
            workers=workers,
            purpose="eval",
            progress=progress,
            backend=backend_for(name) if backend_for else None,
            suite_name="gate",
            preferences=preferences,
        )
    cur, cand = results[current], results[candidate]
    within = f"pass within {turns} turn{'s' if turns != 1 else ''}"
    metrics = [
        compare_metric("pass@1", cur, cand, first_attempt=True),
        compare_metric(within, cur, cand, first_attempt=False),
    ]
    for pref in sorted({*cur.compliance, *cand.compliance}):
        metrics.append(
            compare_tasks(
                compliance_metric(pref), cur.task_followed(pref), cand.task_followed(pref)
            )
        )
    metrics += suite_guards(tasks, cur, cand, within)
    ok, reasons = decide(metrics, require_significant=require_significant)
    if len(tasks) < FEW_TASKS:
        reasons.append(
            f"note: {len(tasks)} tasks can only show large differences (intervals are wide); "
            "use the whole MBPP validation split (90 tasks) for a decision that means much"
        )
    for name, count in reused.items():
        if count:
            reasons.append(
                f"note: {count} of {name}'s {len(tasks)} episodes were read back from an "
                "earlier gate with the same weights, settings and code (--no-reuse runs them "
                "again)"
            )
    promoted = ok and promote
    if ok and not promote:
        reasons.append("would be promoted; left inactive because promotion was turned off")
    in_use = registry.active() or settings.model
    if promoted and current != in_use:
        promoted = False
        reasons.append(
            f"better than {current}, but the model in use is {in_use}: left inactive "
            f"(`fixloop models use {candidate}` switches to it)"
        )
    suites: dict[str, int] = {}
    for t in tasks:
        suites[suite_of(t)] = suites.get(suite_of(t), 0) + 1
    report = GateReport(
        candidate=candidate,
        current=current,
        tasks=len(tasks),
        suites=suites,
        max_turns=turns,
        metrics=metrics,
        promoted=promoted,
        reasons=reasons,
        rule=RULE,
        out_dir=str(out),
    )
    (out / "gate.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (out / "gate.md").write_text(report.markdown(), encoding="utf-8")
    if spec.kind == "trained":
        lineage = {**spec.lineage, "gate": report.model_dump(mode="json", exclude={"rule"})}
        registry.add(spec.model_copy(update={"lineage": lineage}), overwrite=True)
    if promoted:
        registry.set_active(candidate)
    return GateResult(report, cur, cand)
