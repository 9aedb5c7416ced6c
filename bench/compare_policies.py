"""The repair policies side by side at equal attempt budget (issue 18, item 4).

For each suite (default: MBPP validation, 90 tasks, and HumanEval, 164) it runs the agent's
loop once per policy (`fixloop eval --policy P --max-turns 4`, greedy first attempt, seed 0)
and, as the reference, 4 independent samples of one attempt at T 0.8, drawn in order until
one passes (`fixloop eval --samples 4 --temperature 0.8 --max-turns 1 --stop-at-pass`):
pass@t is "one of the first t passed", and the costs count the samples drawn, as a policy's
count the attempts it made before it passed. Where the scoring tests are hidden (HumanEval),
that pass@k is an oracle's pick, so the same episodes are also counted as a deployed loop
would use them (`samples-k4-public`): stopped at the first sample that passes the prompt's
tests, and scored by that sample. It reports, per suite and policy:
pass within 1..4 attempts (pass@1..4 for the samples) with 95% intervals, the paired flips
against greedy at the full budget (tasks only the policy passed / only greedy passed,
McNemar's exact p), completion tokens, prompt tokens sent and evaluated, model time and
wall time (the sum of the episodes'); a markdown table per suite, `summary.json` and a PNG.
With several suites, a pooled table adds every policy that ran on all of them: passes per
suite and over all their tasks, with flips against greedy and against the default policy.

Resumable: every run is an ordinary `fixloop eval` results directory under --out
(`<suite>/<policy>`, `<suite>/samples-k4`); rerunning the same command skips finished
episodes, and each directory can also be continued with the `fixloop eval` command that
`--dry-run` prints. One model is loaded for all runs.

    .venv/bin/python bench/compare_policies.py --model qwen2.5-coder-1.5b --out runs/policies
    .venv/bin/python bench/compare_policies.py --dry-run          # the runs and commands only
    .venv/bin/python bench/compare_policies.py --out runs/policies --report  # no model: figures
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.config import POLICY_NAMES, Settings, load_settings  # noqa: E402
from evals.metrics import binomial_rate, paired_comparison  # noqa: E402
from evals.results import RateOut, StopRule, SuiteResult  # noqa: E402

if TYPE_CHECKING:
    from agent.backends.base import Backend

SAMPLES = "samples-k4"  # the reference: independent samples of one attempt, oracle pass@k
# the same samples' episodes, counted as a loop that sees only the prompt's tests would use
# them: stopped at the first sample that passes those, and scored by that sample
SHIPPED = "samples-k4-public"
SAMPLE_RUNS = (SAMPLES, SHIPPED)
LABELS = {
    SAMPLES: "4 samples, T 0.8 (pass@k)",
    SHIPPED: "4 samples, T 0.8, stopped at a public pass",
}
SUITES = ("mbpp:validation", "humaneval")


@dataclass(frozen=True)
class Run:
    suite: str  # "mbpp:validation", "humaneval", or a .jsonl path (":split" optional)
    policy: str  # a policy name, or SAMPLES

    @property
    def name(self) -> str:
        name, split = self.suite_args
        if name.endswith((".jsonl", ".gz")):
            name = Path(name).name.split(".")[0]
        return f"{name}-{split}" if split else name

    @property
    def suite_args(self) -> tuple[str, str | None]:
        name, _, split = self.suite.partition(":")
        return name, split or None

    @property
    def samples(self) -> int:
        return self.budget if self.policy in SAMPLE_RUNS else 1

    budget: int = 4

    def eval_kwargs(self) -> dict[str, Any]:
        """run_suite's arguments. The samples are drawn until a hidden pass, which draws all
        that the public rule needs (a hidden pass is a public pass): SHIPPED only counts them
        differently."""
        if self.policy in SAMPLE_RUNS:
            return {
                "max_turns": 1,
                "samples": self.budget,
                "temperature": 0.8,
                "stop_at": "pass",
            }
        return {"max_turns": self.budget, "samples": 1, "temperature": 0.0}

    def counted_at(self) -> StopRule | None:
        """The stop rule its figures are counted with."""
        rules: dict[str, StopRule] = {SAMPLES: "pass", SHIPPED: "public-pass"}
        return rules.get(self.policy)

    def out_dir(self, out: Path) -> Path:
        return out / self.name / (SAMPLES if self.policy == SHIPPED else self.policy)

    def command(self, out: Path, model_args: Sequence[str], workers: int) -> str:
        """The `fixloop eval` command that runs (or continues) this run by itself; `model_args`
        also carries --ids/--limit."""
        name, split = self.suite_args
        kw = self.eval_kwargs()
        args = ["fixloop", "eval", "--suite", name, *(["--split", split] if split else [])]
        args += ["--max-turns", str(kw["max_turns"]), "--samples", str(kw["samples"])]
        args += ["--temperature", f"{kw['temperature']:g}", "--seed", "0"]
        if self.policy in SAMPLE_RUNS:
            args += ["--stop-at-pass"]
        else:
            args += ["--policy", self.policy]
        args += [*model_args, "--workers", str(workers), "--out", str(self.out_dir(out))]
        return shlex.join(args)


def plan(suites: Sequence[str], policies: Sequence[str], budget: int, samples: bool) -> list[Run]:
    runs = [Run(s, p, budget) for s in suites for p in policies]
    if samples:
        runs += [Run(s, p, budget) for s in suites for p in SAMPLE_RUNS]
    return runs


def execute(
    run: Run,
    settings: Settings,
    out: Path,
    *,
    backend: Backend,
    workers: int,
    ids: str | None,
    limit: int | None,
    progress: bool,
) -> SuiteResult:
    from evals.runner import run_suite
    from evals.suites import load_suite

    if run.policy == SHIPPED:  # the samples' episodes, drawn by the SAMPLES run
        return read_back(run, out, ids=ids, limit=limit)
    name, split = run.suite_args
    tasks = load_suite(name, split=split, ids=ids, limit=limit)
    policy = "greedy" if run.policy in SAMPLE_RUNS else run.policy
    return run_suite(
        tasks,
        settings.model_copy(update={"policy": policy}),
        **run.eval_kwargs(),
        workers=workers,
        seed=0,
        out_dir=run.out_dir(out),
        progress=progress,
        backend=backend,
        suite_name=name if split is None else f"{name}/{split}",
    )


def read_back(run: Run, out: Path, *, ids: str | None, limit: int | None) -> SuiteResult:
    """The figures of a finished run from its results file alone (no model loaded)."""
    from evals.errors import EvalError
    from evals.results import summarize
    from evals.results_file import read_results
    from evals.suites import load_suite

    name, split = run.suite_args
    tasks = load_suite(name, split=split, ids=ids, limit=limit)
    files = sorted(run.out_dir(out).glob("episodes-*.jsonl"))
    if len(files) != 1:
        raise EvalError(
            f"{run.out_dir(out)}: {len(files)} results files, want 1; run the comparison "
            "without --report to produce it"
        )
    header, records = read_results(files[0])
    kw = run.eval_kwargs()
    try:
        return summarize(
            records,
            [t.task_id or "" for t in tasks],
            model=header.model if header else files[0].stem,
            suite=name if split is None else f"{name}/{split}",
            samples=kw["samples"],
            max_turns=kw["max_turns"],
            temperature=kw["temperature"],
            seed=0,
            results_file=str(files[0]),
            policy=header.policy if header else run.policy,
            stop_at=run.counted_at(),
        )
    except ValueError as exc:
        raise EvalError(
            f"{files[0]}: {exc}; run the comparison without --report to finish it"
        ) from None


# ---------------------------------------------------------------- the figures


def curve(run: Run, result: SuiteResult) -> dict[int, RateOut]:
    """Pass within t attempts, t = 1..budget (for the samples: pass@t)."""
    if run.policy in SAMPLE_RUNS:
        return {k: result.pass_at_k[k] for k in sorted(result.pass_at_k) if k <= run.budget}
    return {t: result.pass_within[t] for t in sorted(result.pass_within)}


def solved(run: Run, result: SuiteResult) -> dict[str, bool]:
    """Task -> passed within the whole budget (the samples: the one the rule stopped at)."""
    if run.policy in SAMPLE_RUNS:
        return {t.task_id: t.solved for t in result.tasks}
    return {t.task_id: t.passed > 0 for t in result.tasks}


def flips_against(reference: dict[str, bool], mine: dict[str, bool]) -> dict[str, Any]:
    """Tasks only `mine` passed, tasks only `reference` passed, and McNemar's exact p."""
    cmp = paired_comparison(reference, mine)
    return {"gained": cmp.only_b, "lost": cmp.only_a, "mcnemar_exact_p": cmp.p_value}


def figures(runs: Sequence[Run], results: dict[Run, SuiteResult]) -> list[dict[str, Any]]:
    """One row per run: pass within each budget, flips against the suite's greedy run, cost."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        result = results[run]
        greedy = next((r for r in runs if r.suite == run.suite and r.policy == "greedy"), None)
        flips = None
        if greedy is not None and greedy != run:
            flips = flips_against(solved(greedy, results[greedy]), solved(run, result))
        rows.append(
            {
                "suite": run.suite,
                "policy": run.policy,
                "n_tasks": result.n_tasks,
                "episodes": result.episodes,
                "errors": result.errors,
                "pass_within": {t: r.model_dump() for t, r in curve(run, result).items()},
                "vs_greedy": flips,
                "completion_tokens": result.completion_tokens,
                "prompt_tokens_sent": result.prompt_tokens,
                "prompt_tokens_evaluated": result.prompt_tokens_evaluated,
                "gen_s": result.gen_s,
                "wall_s": result.wall_s,
                "results_file": result.results_file,
            }
        )
    return rows


def pooled(
    runs: Sequence[Run], results: dict[Run, SuiteResult], default: str
) -> list[dict[str, Any]]:
    """Every policy that ran on every suite, its tasks pooled over the suites: passes within
    the budget per suite and in all, and paired flips against greedy and against `default`
    over all the tasks (task ids differ between suites)."""
    suites = list(dict.fromkeys(r.suite for r in runs))
    by_policy: dict[str, list[Run]] = {}
    for run in runs:
        if run.policy not in SAMPLE_RUNS:
            by_policy.setdefault(run.policy, []).append(run)
    complete = {p: rs for p, rs in by_policy.items() if len(rs) == len(suites)}
    per_run = {r: solved(r, results[r]) for rs in complete.values() for r in rs}
    won = {p: {t: ok for r in rs for t, ok in per_run[r].items()} for p, rs in complete.items()}
    rows: list[dict[str, Any]] = []
    for policy, rs in complete.items():
        mine = [results[r] for r in rs]
        flips: dict[str, Any] = {}
        for other in dict.fromkeys(("greedy", default)):
            if other in won and other != policy:
                flips[other] = flips_against(won[other], won[policy])
        rows.append(
            {
                "policy": policy,
                "per_suite": {r.suite: sum(per_run[r].values()) for r in rs},
                "n_per_suite": {r.suite: results[r].n_tasks for r in rs},
                "passed": binomial_rate(sum(won[policy].values()), len(won[policy])).as_dict(),
                "vs": flips,
                "completion_tokens": sum(m.completion_tokens for m in mine),
                "prompt_tokens_sent": sum(m.prompt_tokens for m in mine),
                "prompt_tokens_evaluated": sum(m.prompt_tokens_evaluated or 0 for m in mine),
            }
        )
    return rows


def pooled_markdown(rows: Sequence[dict[str, Any]], budget: int, default: str) -> str:
    """The pooled table (empty with fewer than two suites)."""
    if not rows or len(rows[0]["per_suite"]) < 2:
        return ""
    suites = list(rows[0]["per_suite"])
    out = [f"\nall suites pooled, within {budget} attempts\n"]
    out.append(
        "| policy | "
        + " | ".join(suites)
        + f" | all | vs greedy | vs {default} (the default) | completion tokens | "
        "prompt tokens evaluated (sent) |"
    )
    out.append("|---" * (len(suites) + 6) + "|")

    def vs(row: dict[str, Any], other: str) -> str:
        f = row["vs"].get(other)
        if f is None:
            return "-"
        return f"+{len(f['gained'])} / -{len(f['lost'])} (p={f['mcnemar_exact_p']:.2g})"

    for r in rows:
        rate = RateOut.model_validate(r["passed"]).short()
        counts = [f"{r['per_suite'][s]}/{r['n_per_suite'][s]}" for s in suites]
        out.append(
            f"| {r['policy']} | "
            + " | ".join(counts)
            + f" | **{rate}** | {vs(r, 'greedy')} | {vs(r, default)} | "
            f"{r['completion_tokens']:,} | {r['prompt_tokens_evaluated']:,} "
            f"({r['prompt_tokens_sent']:,}) |"
        )
    return "\n".join(out)


def markdown(rows: Sequence[dict[str, Any]], budget: int) -> str:
    """One table per suite: a row per policy."""
    out: list[str] = []
    for suite in dict.fromkeys(r["suite"] for r in rows):
        mine = [r for r in rows if r["suite"] == suite]
        n = mine[0]["n_tasks"]
        out.append(f"\n{suite} ({n} tasks), budget {budget} attempts\n")
        heads = [f"within {t}" for t in range(1, budget + 1)]
        out.append(
            "| policy | "
            + " | ".join(heads)
            + " | vs greedy (gained / lost, p) | completion tokens | prompt tokens sent | "
            "prompt tokens evaluated | model time | wall time |"
        )
        out.append("|---" * (len(heads) + 7) + "|")
        for r in mine:
            cells = []
            for t in range(1, budget + 1):
                rate = r["pass_within"].get(t)
                cells.append(RateOut.model_validate(rate).short() if rate else "-")
            cells[-1] = f"**{cells[-1]}**"  # the whole budget
            flips = r["vs_greedy"]
            vs = (
                "-"
                if flips is None
                else f"+{len(flips['gained'])} / -{len(flips['lost'])} "
                f"(p={flips['mcnemar_exact_p']:.2g})"
            )
            evaluated = r["prompt_tokens_evaluated"]
            label = LABELS.get(r["policy"], r["policy"])
            out.append(
                f"| {label} | "
                + " | ".join(cells)
                + f" | {vs} | {r['completion_tokens']:,} | {r['prompt_tokens_sent']:,} | "
                + ("-" if evaluated is None else f"{evaluated:,}")
                + f" | {r['gen_s']:.0f} s | {r['wall_s']:.0f} s |"
            )
    return "\n".join(out)


def plot_pooled(ax: Any, pooled_rows: Sequence[dict[str, Any]], budget: int) -> None:
    """Passes over all suites against prompt tokens evaluated: one labelled point per
    policy, with its 95% interval (up and to the left is better)."""
    for r in pooled_rows:
        rate = RateOut.model_validate(r["passed"])
        x = r["prompt_tokens_evaluated"] / 1000
        y = 100 * rate.rate
        low, high = (100 * c for c in rate.ci95)
        ax.errorbar([x], [y], yerr=[[y - low], [high - y]], fmt="o", capsize=3)
        ax.annotate(r["policy"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    n = sum(pooled_rows[0]["n_per_suite"].values()) if pooled_rows else 0
    ax.set_title(f"all suites pooled ({n} tasks), within {budget} attempts")
    ax.set_xlabel("prompt tokens evaluated (thousands)")
    ax.set_ylabel("tasks passed (%)")
    ax.grid(alpha=0.3)


def plot(
    rows: Sequence[dict[str, Any]],
    path: Path,
    title: str,
    pooled_rows: Sequence[dict[str, Any]] = (),
    budget: int = 4,
) -> Path:
    """Pass within 1..budget attempts per suite, and the pooled rows' passes against their
    prompt compute when they span two suites or more."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suites = list(dict.fromkeys(r["suite"] for r in rows))
    with_pooled = bool(pooled_rows) and len(pooled_rows[0]["per_suite"]) > 1
    n_axes = len(suites) + with_pooled
    fig, axes = plt.subplots(1, n_axes, figsize=(6 * n_axes, 4.5), squeeze=False)
    if with_pooled:
        plot_pooled(axes[0][-1], pooled_rows, budget)
    for ax, suite in zip(axes[0][: len(suites)], suites, strict=True):
        for r in (r for r in rows if r["suite"] == suite):
            ts = sorted(int(t) for t in r["pass_within"])
            rates = [RateOut.model_validate(r["pass_within"][t]) for t in ts]
            samples = r["policy"] in SAMPLE_RUNS
            (line,) = ax.plot(
                ts,
                [100 * x.rate for x in rates],
                marker="s" if samples else "o",
                linestyle=(":" if r["policy"] == SHIPPED else "--") if samples else "-",
                label=LABELS.get(r["policy"], r["policy"]),
            )
            ax.fill_between(
                ts,
                [100 * x.ci95[0] for x in rates],
                [100 * x.ci95[1] for x in rates],
                alpha=0.08,
                color=line.get_color(),
            )
        n = next(r["n_tasks"] for r in rows if r["suite"] == suite)
        ax.set_title(f"{suite} ({n} tasks)")
        ax.set_xlabel("attempts (samples for pass@k)")
        ax.set_ylabel("tasks passed (%)")
        ax.set_xticks(sorted({int(t) for r in rows for t in r["pass_within"]}))
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- the command


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--suites", nargs="+", default=list(SUITES), help="mbpp:SPLIT, humaneval, .jsonl"
    )
    ap.add_argument("--policies", nargs="+", default=list(POLICY_NAMES), choices=POLICY_NAMES)
    ap.add_argument("--no-samples", action="store_true", help="skip the 4-samples reference")
    ap.add_argument("--budget", type=int, default=4, help="attempts per task (samples too)")
    ap.add_argument("--model", help="registered model name, .gguf (default: the setting)")
    ap.add_argument("--base-url", help="OpenAI-compatible server(s), comma-separated")
    ap.add_argument("--workers", type=int, default=1, help="episodes in flight (servers)")
    ap.add_argument("--ids", help="task ids, e.g. 511-550 (every suite)")
    ap.add_argument("--limit", type=int, help="first N tasks of every suite")
    ap.add_argument("--out", type=Path, default=Path("runs/compare-policies"))
    ap.add_argument("--png", type=Path, help="default: OUT/policies.png")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="print the runs and their commands")
    ap.add_argument(
        "--report",
        action="store_true",
        help="tables and plot from the finished runs under --out; loads no model",
    )
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, backend: Backend | None = None) -> int:
    """Run (or continue) every run; `backend` replaces the model (tests)."""
    a = parse(argv)
    overrides = {"model": a.model, "base_url": a.base_url}
    settings, _ = load_settings({k: v for k, v in overrides.items() if v is not None})
    runs = plan(
        a.suites, ["greedy", *[p for p in a.policies if p != "greedy"]], a.budget, not a.no_samples
    )
    model_args = [f"--model={a.model}"] if a.model else []
    model_args += [f"--base-url={a.base_url}"] if a.base_url else []
    model_args += [f"--ids={a.ids}"] if a.ids else []
    model_args += [f"--limit={a.limit}"] if a.limit else []
    print(f"{len(runs)} runs, model {settings.base_url or settings.model}, results under {a.out}")
    for run in runs:
        how = (
            f"counted from {SAMPLES}'s episodes"
            if run.policy == SHIPPED
            else run.command(a.out, model_args, a.workers)
        )
        print(f"  {run.name}/{run.policy}: {how}")
    if a.dry_run:
        return 0
    results: dict[Run, SuiteResult] = {}
    started = time.perf_counter()
    if a.report:
        from evals.errors import EvalError

        try:
            results = {r: read_back(r, a.out, ids=a.ids, limit=a.limit) for r in runs}
        except EvalError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        model_key = ",".join(sorted({r.model_key for r in results.values()}))
    else:
        if backend is None:
            from agent.backends import make_backend

            backend = make_backend(settings)
        for run in runs:
            results[run] = execute(
                run,
                settings,
                a.out,
                backend=backend,
                workers=a.workers,
                ids=a.ids,
                limit=a.limit,
                progress=not a.no_progress,
            )
        model_key = backend.identity.key
    rows = figures(runs, results)
    default = str(Settings.model_fields["policy"].default)
    pooled_rows = pooled(runs, results, default)
    table = markdown(rows, a.budget) + pooled_markdown(pooled_rows, a.budget, default)
    print(table)
    summary = {
        "model": settings.base_url or settings.model,
        "model_key": model_key,
        "budget": a.budget,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "rows": rows,
        "pooled": pooled_rows,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (a.out / "summary.md").write_text(table.lstrip() + "\n", encoding="utf-8")
    png = plot(
        rows,
        a.png or a.out / "policies.png",
        f"repair policies, {summary['model']}, {a.budget} attempts",
        pooled_rows,
        a.budget,
    )
    print(f"\nsummary: {a.out / 'summary.json'}\ntable:   {a.out / 'summary.md'}\nplot:    {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
