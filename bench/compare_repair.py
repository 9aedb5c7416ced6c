"""fixloop's repair loop against the plain reference, task by task, on the tasks both finished.

usage: python bench/compare_repair.py --fixloop DIR [DIR ...] --reference LOG [LOG ...]
                                      [--samples DIR ...] [--turns 4] [--png PNG]

DIR: `fixloop eval --out` directories (their episodes-*.jsonl); LOG: the printed output of
`bench/reference_repair.py` ("<id> passed at turn k" / "<id> failed" lines). Prints pass@1
and pass within 1..turns for both with 95% Wilson intervals, the tasks that differ, and
plots pass rate by turn budget. `--samples`: a `fixloop eval --samples K --max-turns 1`
run on the same tasks, whose pass@k (k = 1..turns, the unbiased estimator) is the
equal-budget alternative to k turns of repair, as RLEF compares them.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from evals.metrics import mean_pass_at_k, wilson_interval


def fixloop_turns(dirs: list[Path]) -> dict[int, int]:
    """task number -> the turn it first passed (0: never)."""
    out: dict[int, int] = {}
    for d in dirs:
        for path in d.glob("episodes-*.jsonl"):
            for line in path.read_text().splitlines():
                row = json.loads(line)
                if "task_id" in row:
                    out[int(row["task_id"].split("/")[1])] = row["pass_turn"] or 0
    return out


def sample_counts(dirs: list[Path]) -> tuple[dict[int, tuple[int, int]], float]:
    """task number -> (samples drawn, samples that passed on their one turn); temperature."""
    out: dict[int, tuple[int, int]] = {}
    temperature = 0.0
    for d in dirs:
        for path in d.glob("episodes-*.jsonl"):
            for line in path.read_text().splitlines():
                row = json.loads(line)
                if "run" in row:
                    temperature = row["run"]["temperature"]
                if "task_id" in row:
                    task = int(row["task_id"].split("/")[1])
                    n, c = out.get(task, (0, 0))
                    out[task] = (n + 1, c + int(row["pass_turn"] == 1))
    return out, temperature


def reference_turns(logs: list[Path]) -> dict[int, int]:
    out: dict[int, int] = {}
    for log in logs:
        for line in log.read_text().splitlines():
            m = re.match(r"^(\d+) (?:passed at turn (\d+)|failed)", line)
            if m:
                out[int(m.group(1))] = int(m.group(2) or 0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixloop", nargs="+", type=Path, required=True)
    ap.add_argument("--reference", nargs="+", type=Path, required=True)
    ap.add_argument("--samples", nargs="+", type=Path, default=[])
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--png", type=Path)
    a = ap.parse_args()
    runs = {"fixloop": fixloop_turns(a.fixloop), "reference": reference_turns(a.reference)}
    samples, temperature = sample_counts(a.samples) if a.samples else ({}, 0.0)
    common = sorted(set(runs["fixloop"]) & set(runs["reference"]))
    if a.samples:
        common = [t for t in common if samples.get(t, (0, 0))[0] >= a.turns]
    n = len(common)
    if not n:
        raise SystemExit("no task was finished by both runs")
    curves: dict[str, list[float]] = {}
    print(f"{n} tasks (ids {common[0]}-{common[-1]})")
    for name, res in runs.items():
        counts = [sum(0 < res[t] <= k for t in common) for k in range(1, a.turns + 1)]
        curves[name] = [c / n for c in counts]
        lo1, hi1 = wilson_interval(counts[0], n)
        lo, hi = wilson_interval(counts[-1], n)
        print(
            f"{name:10} pass@1 {counts[0]}/{n} {100 * counts[0] / n:.1f}% "
            f"[{100 * lo1:.1f}-{100 * hi1:.1f}]  within {a.turns}: {counts[-1]}/{n} "
            f"{100 * counts[-1] / n:.1f}% [{100 * lo:.1f}-{100 * hi:.1f}]  "
            f"gain +{counts[-1] - counts[0]}"
        )
    if a.samples:
        counts_k = [samples[t] for t in common]
        sampled = [mean_pass_at_k(counts_k, k) for k in range(1, a.turns + 1)]
        curves[f"k samples of 1 turn (T={temperature:g})"] = sampled
        rates = ", ".join(f"pass@{k} {100 * r:.1f}%" for k, r in enumerate(sampled, 1))
        print(f"samples    {rates} (same tasks, {a.turns}+ samples each)")
    fx, ref = runs["fixloop"], runs["reference"]
    print("only fixloop passed (within budget):", [t for t in common if fx[t] and not ref[t]])
    print("only the reference passed:", [t for t in common if ref[t] and not fx[t]])
    print("fixloop repaired (task, turn):", [(t, fx[t]) for t in common if fx[t] > 1])
    if a.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        xs = list(range(1, a.turns + 1))
        for name, ys in curves.items():
            ax.plot(xs, [100 * y for y in ys], marker="o", label=name)
        ax.set_xticks(xs)
        ax.set_xlabel("turn budget (or samples)")
        ax.set_ylabel(f"tasks passed (%, n={n})")
        title = "MBPP validation: repair loop vs raw-traceback retries"
        ax.set_title(title + (" vs samples" if a.samples else ""))
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(a.png, dpi=120)
        print(f"plot: {a.png}")


if __name__ == "__main__":
    main()
