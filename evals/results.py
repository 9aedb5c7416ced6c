"""What an evaluation produces: one record per episode, and the totals computed from them.

Records are the unit of resumability: the runner appends one `EpisodeRecord`
per finished episode to a JSONL file, and `summarize` computes every figure
from the records alone, in task order, so an interrupted and resumed run gives
exactly the totals of an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from evals.metrics import Rate, averaged_rate, pass_at_k

# Where a task's samples stop being drawn (`--stop-at-pass`, `--stop-at-public-pass`):
# "pass", at the first that passes the scoring tests (an oracle: those are hidden where the
# task has them); "public-pass", at the first that passes the tests in the prompt, as a loop
# in a user's terminal would, shipping that sample whatever the hidden tests say.
StopRule = Literal["pass", "public-pass"]
STOP_RULES: tuple[StopRule, ...] = ("pass", "public-pass")


class EpisodeRecord(BaseModel):
    """One evaluation episode (one sample of one task) as scored."""

    task_id: str
    sample: int = 0
    seed: int = 0
    model: str  # the model's label as given (--model)
    model_key: str  # ModelIdentity.key: which weights exactly
    outcome: str  # EpisodeFinished.outcome ("passed", "failed", "error", ...)
    passed: bool  # the final program passed the scoring tests (hidden ones where the task has)
    pass_turn: int | None = None  # smallest turn budget t at which the episode passed
    within: list[bool] = Field(default_factory=list)  # passed with a budget of t turns, t=1..
    turns: int = 0  # attempts made
    turn_passed: list[bool] = Field(default_factory=list)  # public tests, per turn
    n_tests: int = 0
    best_passed: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0  # sent
    # of those, evaluated by the model (the rest were its cached prefix); None when the
    # backend could not tell (and in records written before it was counted)
    prompt_tokens_evaluated: int | None = None
    gen_s: float = 0.0  # time in the model
    exec_s: float = 0.0  # time in the sandbox
    wall_s: float = 0.0  # the episode, less any wait for another worker's generation
    session_id: str = ""
    log_path: str = ""
    error: str | None = None
    # the first program's preference checks (`fixloop eval --preferences`): text -> passed,
    # failed or skipped (the verifier could not decide)
    preferences: dict[str, str] = Field(default_factory=dict)

    def stops(self, rule: StopRule) -> bool:
        """This one-attempt sample ends the drawing of its task's samples under `rule`."""
        if rule == "pass":
            return self.passed_within(1)
        return bool(self.turn_passed) and self.turn_passed[0]

    def passed_within(self, turns: int) -> bool:
        """Passed with a budget of `turns` turns (turns beyond the run's budget: the last)."""
        if not self.within:
            return False
        return self.within[min(turns, len(self.within)) - 1]


class RateOut(BaseModel):
    count: float
    n: int
    rate: float
    ci95: tuple[float, float]
    ci_method: str

    @classmethod
    def of(cls, rate: Rate) -> RateOut:
        return cls(
            count=rate.count,
            n=rate.n,
            rate=rate.rate,
            ci95=(rate.low, rate.high),
            ci_method=rate.method,
        )

    def short(self) -> str:
        count = str(int(self.count)) if float(self.count).is_integer() else f"{self.count:.2f}"
        lo, hi = self.ci95
        return f"{count}/{self.n} {100 * self.rate:.1f}% [{100 * lo:.1f}-{100 * hi:.1f}]"


class TaskSummary(BaseModel):
    task_id: str
    samples: int
    first_passed: int  # samples whose first attempt passed
    pass_turns: list[int | None]  # per sample
    passed: int  # samples that passed within the turn budget
    # samples drawn until a stop rule: the sample it stopped at passed the scoring tests
    shipped: bool | None = None
    errors: int = 0
    followed: dict[str, int] = Field(default_factory=dict)  # preference -> first programs following
    checked: dict[str, int] = Field(default_factory=dict)  # preference -> first programs decided

    @property
    def solved(self) -> bool:
        """The task counts as solved when at least half of its samples passed (all, for one);
        drawn until a stop rule, when the sample it stopped at passed."""
        if self.shipped is not None:
            return self.shipped
        return self.passed * 2 >= self.samples and self.passed > 0

    @property
    def first_solved(self) -> bool:
        if self.shipped is not None:  # drawn until a stop rule: the first sample's verdict
            return self.pass_turns[0] == 1
        return self.first_passed * 2 >= self.samples and self.first_passed > 0

    def follows(self, preference: str) -> bool | None:
        """Most of the first programs follow `preference` (None: none was checked)."""
        checked = self.checked.get(preference, 0)
        if not checked:
            return None
        followed = self.followed.get(preference, 0)
        return followed * 2 >= checked and followed > 0


class SuiteResult(BaseModel):
    """Every figure of one model on one suite, and the per-task detail behind it."""

    model: str
    model_key: str
    suite: str
    n_tasks: int
    samples: int
    max_turns: int
    temperature: float
    seed: int
    policy: str = "greedy"  # the repair policy the episodes followed
    # a task's samples were drawn in order until one passed (`StopRule`): pass@k is "the
    # sample the rule stopped at among the first k passed", pass@1 and pass within t are
    # sample 0's, and the costs count the samples drawn
    stop_at: StopRule | None = None
    pass_at_1: RateOut  # first attempt, averaged over samples
    pass_at_k: dict[int, RateOut]  # first attempt, k independent samples (Chen et al.)
    pass_within: dict[int, RateOut]  # the repair loop: passed within t turns
    passed: RateOut  # passed within max_turns
    episodes: int
    errors: int
    completion_tokens: int
    prompt_tokens: int  # sent
    prompt_tokens_evaluated: int | None = None  # None unless every episode counted them
    gen_s: float
    exec_s: float
    wall_s: float  # sum of episode wall times (same for a resumed run)
    tokens_per_s: float  # completion tokens / time in the model
    overhead_s: float  # wall time not spent in the model or the sandbox
    elapsed_s: float = 0.0  # this invocation's wall clock (a resumed run counts only its part)
    results_file: str = ""
    # `--preferences`: per preference, the share of first programs that follow it, among those
    # its verifier decided (a task's samples averaged, as for pass@1)
    compliance: dict[str, RateOut] = Field(default_factory=dict)
    tasks: list[TaskSummary]

    def task_passed(self, first_attempt: bool = False) -> dict[str, bool]:
        return {t.task_id: (t.first_solved if first_attempt else t.solved) for t in self.tasks}

    def task_followed(self, preference: str) -> dict[str, bool]:
        """task -> its first programs follow `preference` (tasks where it was checked)."""
        out = {t.task_id: t.follows(preference) for t in self.tasks}
        return {task: ok for task, ok in out.items() if ok is not None}


def ks_for(samples: int) -> list[int]:
    """The k values to report pass@k for: 1..samples when few, else powers of two and samples."""
    if samples <= 10:
        return list(range(1, samples + 1))
    ks = [k for k in (1, 2, 5, 10, 20, 50, 100) if k <= samples]
    return sorted({*ks, samples})


def _drawn(
    by_key: dict[tuple[str, int], EpisodeRecord],
    task_id: str,
    samples: int,
    stop_at: StopRule | None,
) -> list[int]:
    """The sample indices that count for a task: all of them, or (`stop_at`) those up to and
    including the one the rule stops at."""
    if stop_at is None:
        return list(range(samples))
    for s in range(samples):
        record = by_key.get((task_id, s))
        if record is None or record.stops(stop_at):
            return list(range(s + 1))
    return list(range(samples))


def _stopped_and_passed(records: Sequence[EpisodeRecord], rule: StopRule) -> bool:
    """The sample `rule` stops at among `records` exists and passed the scoring tests."""
    stop = next((r for r in records if r.stops(rule)), None)
    return stop is not None and stop.passed_within(1)


def summarize(
    records: Sequence[EpisodeRecord],
    task_ids: Sequence[str],
    *,
    model: str,
    suite: str,
    samples: int,
    max_turns: int,
    temperature: float,
    seed: int,
    elapsed_s: float = 0.0,
    results_file: str = "",
    policy: str = "greedy",
    stop_at: StopRule | None = None,
) -> SuiteResult:
    """Totals over `task_ids` (in that order) from the records, using samples 0..samples-1;
    with `stop_at`, a task's samples up to the one the rule stops at (those after it, drawn
    or not, are left out). Records drawn until a pass also serve "public-pass" where every
    sample that passed passed its public tests too."""
    if stop_at is not None and max_turns != 1:
        raise ValueError(f"stopping at a pass counts one-attempt samples, not {max_turns} turns")
    by_key = {(r.task_id, r.sample): r for r in records}
    drawn = {t: _drawn(by_key, t, samples, stop_at) for t in task_ids}
    missing = [(t, s) for t in task_ids for s in drawn[t] if (t, s) not in by_key]
    if missing:
        raise ValueError(f"{len(missing)} episode(s) have no result, e.g. {missing[0]}")
    chosen = [by_key[(t, s)] for t in task_ids for s in drawn[t]]
    tasks: list[TaskSummary] = []
    preferences = sorted({p for r in chosen for p in r.preferences})
    for tid in task_ids:
        recs = [by_key[(tid, s)] for s in drawn[tid]]
        tasks.append(
            TaskSummary(
                task_id=tid,
                samples=len(recs),
                first_passed=sum(r.passed_within(1) for r in recs),
                pass_turns=[r.pass_turn for r in recs],
                passed=sum(r.passed_within(max_turns) for r in recs),
                shipped=_stopped_and_passed(recs, stop_at) if stop_at else None,
                errors=sum(r.outcome == "error" for r in recs),
                followed={
                    p: sum(r.preferences.get(p) == "passed" for r in recs) for p in preferences
                },
                checked={
                    p: sum(r.preferences.get(p) in ("passed", "failed") for r in recs)
                    for p in preferences
                },
            )
        )
    compliance = {
        p: RateOut.of(averaged_rate([t.followed[p] / t.checked[p] for t in tasks if t.checked[p]]))
        for p in preferences
        if any(t.checked[p] for t in tasks)
    }
    counted = {t: [0] if stop_at else drawn[t] for t in task_ids}  # unbiased per sample
    within = {
        turn: RateOut.of(
            averaged_rate(
                [
                    sum(by_key[(t, s)].passed_within(turn) for s in counted[t]) / len(counted[t])
                    for t in task_ids
                ]
            )
        )
        for turn in range(1, max_turns + 1)
    }
    if stop_at:  # the sample the rule stopped at among the first k passed
        at_k = {
            k: RateOut.of(
                averaged_rate(
                    [
                        float(_stopped_and_passed([by_key[(t, s)] for s in drawn[t][:k]], stop_at))
                        for t in task_ids
                    ]
                )
            )
            for k in ks_for(samples)
        }
    else:
        at_k = {
            k: RateOut.of(averaged_rate([pass_at_k(samples, t.first_passed, k) for t in tasks]))
            for k in ks_for(samples)
        }
    gen_s = sum(r.gen_s for r in chosen)
    exec_s = sum(r.exec_s for r in chosen)
    wall_s = sum(r.wall_s for r in chosen)
    tokens = sum(r.completion_tokens for r in chosen)
    keys = sorted({r.model_key for r in chosen})
    return SuiteResult(
        model=model,
        model_key=",".join(keys),
        suite=suite,
        n_tasks=len(task_ids),
        samples=samples,
        max_turns=max_turns,
        temperature=temperature,
        seed=seed,
        policy=policy,
        stop_at=stop_at,
        pass_at_1=within[1],
        pass_at_k=at_k,
        pass_within=within,
        passed=within[max_turns],
        episodes=len(chosen),
        errors=sum(r.outcome == "error" for r in chosen),
        completion_tokens=tokens,
        prompt_tokens=sum(r.prompt_tokens for r in chosen),
        prompt_tokens_evaluated=(
            sum(r.prompt_tokens_evaluated or 0 for r in chosen)
            if all(r.prompt_tokens_evaluated is not None for r in chosen)
            else None
        ),
        gen_s=round(gen_s, 3),
        exec_s=round(exec_s, 3),
        wall_s=round(wall_s, 3),
        tokens_per_s=round(tokens / gen_s, 2) if gen_s > 0 else 0.0,
        overhead_s=round(max(0.0, wall_s - gen_s - exec_s), 3),
        elapsed_s=round(elapsed_s, 3),
        results_file=results_file,
        compliance=compliance,
        tasks=tasks,
    )
