"""The comparison RLEF makes, for one RLEF run: repair against resampling, before and after.

usage: python bench/rlef_compare.py --run RUN_DIR --base MODEL --trained MODEL
                                    [--turns 3] [--temperature 0.8] [--limit N]
                                    [--workers 2] [--max-tokens N] [--out DIR]
                                    [--report-only]

MODEL: registered names (the trained one from `fixloop export RUN_DIR --lora-only`). It runs
two `fixloop eval`s on MBPP validation, each resumable with the same command (`--out`):
`repair/`, greedy repair within `--turns` attempts, and `samples/`, `--turns` independent
one-attempt samples at `--temperature` (the same attempt budget). Then it writes
`report.md` and `budget.png` in `--out` (default RUN_DIR/compare), and rewrites the run's
own report.md with the table in it: the run's reward curve summary, pass within
1..turns attempts for both policies and both models with 95% intervals, and the paired flips
of the trained model against its base (exact McNemar p). RLEF's claim is that training makes
repair beat resampling at equal budget; this is the table that shows whether it did.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from evals.metrics import mean_pass_at_k, paired_comparison, wilson_interval
from evals.report import read_results_json
from evals.results import SuiteResult
from trainer.rlef.report import COMPARE_DIR, reward_summary, write_run_report

REPO = Path(__file__).resolve().parent.parent


def eval_command(args: argparse.Namespace, policy: str) -> list[str]:
    cmd = [sys.executable, "-m", "fixloop", "eval", "--suite", "mbpp", "--split", "validation",
           "--model", args.base, "--model", args.trained, "--workers", str(args.workers),
           "--out", str(args.out / policy)]  # fmt: skip
    if policy == "repair":
        cmd += ["--max-turns", str(args.turns)]
    else:
        cmd += ["--max-turns", "1", "--samples", str(args.turns),
                "--temperature", str(args.temperature)]  # fmt: skip
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    return cmd


def runs_by_model(results: Path) -> dict[str, SuiteResult]:
    return {run.model: run for run in read_results_json(results)}


def repair_passes(run: SuiteResult, k: int) -> dict[str, bool]:
    """task -> passed within k attempts of the (single) repair episode."""
    out = {}
    for task in run.tasks:
        turns = [t for t in task.pass_turns if t is not None]
        out[task.task_id] = bool(turns) and min(turns) <= k
    return out


def sample_counts(run: SuiteResult) -> dict[str, tuple[int, int]]:
    """task -> (samples, samples that passed on their one attempt)."""
    return {t.task_id: (t.samples, sum(1 for p in t.pass_turns if p == 1)) for t in run.tasks}


def rate(count: float, n: int) -> str:
    lo, hi = wilson_interval(round(count), n)
    return f"{count:g}/{n} {100 * count / n:.1f}% [{100 * lo:.1f}-{100 * hi:.1f}]"


def report(args: argparse.Namespace) -> str:
    repair = runs_by_model(args.out / "repair" / "results.json")
    samples = runs_by_model(args.out / "samples" / "results.json")
    models = [args.base, args.trained]
    lines = [f"# RLEF: repair against resampling, {args.base} before and after", ""]
    if args.run:
        lines += [
            f"Run `{args.run}`: {reward_summary(args.run)} (curve: {args.run}/reward.png).",
            "",
        ]
    env = f"FIXLOOP_MAX_TOKENS={args.max_tokens} " if args.max_tokens else ""
    lines += [f"`{env}{shlex.join(eval_command(args, p)[2:])}`" for p in ("repair", "samples")]
    lines += [
        "",
        "| model | attempts | repair: pass within k | samples: pass@k |",
        "|---|---|---|---|",
    ]
    curves: dict[str, list[float]] = {}
    for model in models:
        n = len(repair[model].tasks)
        counts = list(sample_counts(samples[model]).values())
        for k in range(1, args.turns + 1):
            within = sum(repair_passes(repair[model], k).values())
            sampled = mean_pass_at_k(counts, k) * len(counts)
            curves.setdefault(f"{model} repair", []).append(within / n)
            curves.setdefault(f"{model} samples", []).append(sampled / len(counts))
            lines.append(
                f"| {model} | {k} | {rate(within, n)} | {rate(round(sampled, 1), len(counts))} |"
            )
    lines += ["", "Paired, trained against base (tasks solved by one and not the other):", ""]
    k = args.turns
    flips = paired_comparison(
        repair_passes(repair[args.base], k), repair_passes(repair[args.trained], k)
    )
    lines.append(
        f"- repair within {k}: +{len(flips.only_b)} / -{len(flips.only_a)}, McNemar exact "
        f"p = {flips.p_value:.3g} (gained {', '.join(flips.only_b) or '-'}; lost "
        f"{', '.join(flips.only_a) or '-'})"
    )
    any_pass = {m: {t: c > 0 for t, (_n, c) in sample_counts(samples[m]).items()} for m in models}
    flips = paired_comparison(any_pass[args.base], any_pass[args.trained])
    lines.append(
        f"- any of {k} samples: +{len(flips.only_b)} / -{len(flips.only_a)}, McNemar exact "
        f"p = {flips.p_value:.3g}"
    )
    for model in models:
        r, s = repair[model], samples[model]
        lines.append(
            f"- {model}: repair {r.wall_s:.0f} s, {r.completion_tokens:,} tokens; "
            f"samples {s.wall_s:.0f} s, {s.completion_tokens:,} tokens"
        )
    _plot(curves, args.turns, args.out / "budget.png", args.base)
    lines += ["", f"Plot: {args.out / 'budget.png'}", ""]
    return "\n".join(lines)


def _plot(curves: dict[str, list[float]], turns: int, path: Path, base: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in curves.items():
        style = "-" if label.endswith("repair") else "--"
        color = "tab:gray" if label.startswith(base + " ") else "tab:blue"
        ax.plot(
            range(1, turns + 1),
            [100 * v for v in values],
            style,
            color=color,
            marker="o",
            label=label,
        )
    ax.set_xlabel("attempts (generations executed)")
    ax.set_ylabel("MBPP validation tasks solved (%)")
    ax.set_xticks(range(1, turns + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("RLEF: repair (solid) against independent samples (dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="the RLEF run directory (for its reward curve)")
    parser.add_argument("--base", required=True)
    parser.add_argument("--trained", required=True)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--max-tokens", type=int, help="tokens per reply (the run's --max-new-tokens, e.g. 256)"
    )
    parser.add_argument("--out", type=Path, help="default: RUN_DIR/compare, or runs/rlef-compare")
    parser.add_argument("--report-only", action="store_true", help="use the evals already run")
    args = parser.parse_args()
    if args.out is None:
        args.out = args.run / COMPARE_DIR if args.run else Path("runs/rlef-compare")
    if not args.report_only:
        for policy in ("repair", "samples"):
            cmd = eval_command(args, policy)
            print("$", shlex.join(cmd[2:]), flush=True)
            env = dict(os.environ)
            if args.max_tokens:
                env["FIXLOOP_MAX_TOKENS"] = str(args.max_tokens)
            subprocess.run(cmd, cwd=REPO, check=True, env=env)
    text = report(args)
    (args.out / "report.md").write_text(text, encoding="utf-8")
    print(text)
    if args.run and args.out.resolve() == (args.run / COMPARE_DIR).resolve():
        print(f"run report: {write_run_report(args.run)}")


if __name__ == "__main__":
    main()
