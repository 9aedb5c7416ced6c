"""Independent samples as a deployed loop would use them: stop at the first sample whose
*public* tests pass, and count that sample's hidden verdict (issue 18).

pass@k counts a task when any of k samples passes the hidden tests: an oracle picks the
sample. A loop in a user's terminal sees only the tests in the prompt, so it stops at the
first sample that passes those, right or wrong. On MBPP the prompt's tests are the tests, so
the two agree; on HumanEval the prompt holds the docstring's examples only, and they do not.

Reads a `samples-k4` results directory of `bench/compare_policies.py` (drawn until a hidden
pass, which draws every sample the public rule needs: a hidden pass is a public pass) and
prints both figures with their costs (the samples up to where each rule stops).

    .venv/bin/python bench/deployable_samples.py runs/policies/humaneval/samples-k4
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evals.metrics import wilson_interval  # noqa: E402
from evals.results import EpisodeRecord  # noqa: E402
from evals.results_file import read_results  # noqa: E402


def public_pass(record: EpisodeRecord) -> bool:
    return bool(record.turn_passed and record.turn_passed[0])


def stop_index(samples: Sequence[EpisodeRecord], public: bool) -> int | None:
    """The sample a rule stops at: the first public pass, or (the oracle) the first pass."""
    for i, record in enumerate(samples):
        if public_pass(record) if public else record.passed:
            return i
    return None


def figures(by_task: dict[str, list[EpisodeRecord]], budget: int, public: bool) -> dict:
    within = [0] * budget
    cost = {"episodes": 0, "completion": 0, "sent": 0, "evaluated": 0, "wall_s": 0.0}
    for samples in by_task.values():
        stop = stop_index(samples, public)
        drawn = samples if stop is None else samples[: stop + 1]
        if stop is None and len(samples) < budget:
            raise SystemExit(f"{samples[0].task_id}: {len(samples)} of {budget} samples drawn")
        for record in drawn:
            cost["episodes"] += 1
            cost["completion"] += record.completion_tokens
            cost["sent"] += record.prompt_tokens
            cost["evaluated"] += record.prompt_tokens_evaluated or 0
            cost["wall_s"] += record.wall_s
        if stop is not None and samples[stop].passed:
            for k in range(stop, budget):
                within[k] += 1
    return {"within": within, **cost}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    (path,) = sorted(Path(args[0]).glob("episodes-*.jsonl")) or [None]
    if path is None:
        print(f"error: no episodes-*.jsonl in {args[0]}", file=sys.stderr)
        return 2
    _, records = read_results(path)
    by_task: dict[str, list[EpisodeRecord]] = {}
    for record in sorted(records, key=lambda r: r.sample):
        by_task.setdefault(record.task_id, []).append(record)
    budget = max(r.sample for r in records) + 1
    n = len(by_task)
    print(f"{path}: {n} tasks, {budget} samples at most")
    print("| rule | " + " | ".join(f"within {k}" for k in range(1, budget + 1)), end="")
    print(" | samples drawn | completion tokens | prompt sent | prompt evaluated | wall |")
    print("|---" * (budget + 6) + "|")
    for public, name in ((True, "stop at a public pass (deployable)"), (False, "oracle pass@k")):
        f = figures(by_task, budget, public)
        cells = []
        for count in f["within"]:
            low, high = wilson_interval(count, n)
            cells.append(f"{count}/{n} {100 * count / n:.1f}% [{100 * low:.1f}-{100 * high:.1f}]")
        print(
            f"| {name} | " + " | ".join(cells) + f" | {f['episodes']} | {f['completion']:,} | "
            f"{f['sent']:,} | {f['evaluated']:,} | {f['wall_s']:.0f} s |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
