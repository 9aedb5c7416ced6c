"""Assert tests run in one process; when a test takes the process down, the rest still run.

The harness runs the tests of a job one after another in the program's process, each under a
timer. A test that ends that process (os._exit, a signal, a hang the timer cannot break, which
the host's deadline kills) is given its result here, and a new job runs the remaining tests.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from agent.sandbox.process import RawRun
from agent.sandbox.result import CapturedText


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _end_record(raw: RawRun) -> dict[str, Any]:
    return next((r for r in raw.records if r.get("kind") == "exit"), {})


def lost_test_record(raw: RawRun, index: int, name: str, timeout_s: float) -> dict[str, Any]:
    """The result of the test that was running when its process ended."""
    end = _end_record(raw)
    sig = end.get("signal", raw.signal)
    code = end.get("exit_code", raw.exit_code)
    record: dict[str, Any] = {"kind": "test", "index": index, "name": name}
    if raw.timed_out:
        return {
            **record,
            "status": "timeout",
            "message": f"the test did not finish within {timeout_s:g} s (killed)",
            "duration_s": timeout_s,
        }
    if sig == signal.SIGXCPU:
        return {
            **record,
            "status": "timeout",
            "message": "the test used up the CPU-time limit (killed by SIGXCPU)",
        }
    if sig is not None:
        hint = " (a stack overflow: recursion too deep?)" if sig == signal.SIGSEGV else ""
        name_ = _signal_name(sig)
        return {
            **record,
            "status": "error",
            "exception_type": name_,
            "message": f"the process was killed by {name_} during this test{hint}",
        }
    return {
        **record,
        "status": "error",
        "exception_type": "SystemExit",
        "message": f"the process exited with code {code} during this test",
    }


def _merge_text(parts: list[CapturedText]) -> CapturedText:
    if len(parts) == 1:
        return parts[0]
    return CapturedText(
        text="".join(p.text for p in parts),
        total_bytes=sum(p.total_bytes for p in parts),
        truncated_bytes=sum(p.truncated_bytes for p in parts),
    )


def run_with_resume(run_job: Callable[[int], RawRun], tests: list[str], timeout_s: float) -> RawRun:
    """Run `run_job(start)` until every test has a result; one merged RawRun."""
    runs: list[RawRun] = []
    records: list[dict[str, Any]] = []
    start = 0
    while True:
        raw = run_job(start)
        runs.append(raw)
        load = next((r for r in raw.records if r.get("kind") == "load"), None)
        done = [r for r in raw.records if r.get("kind") == "test"]
        if not records and load is not None:
            records.append(load)
        records += done
        reached = start + len(done)
        # stop: loading failed or never finished, every test reported, or no progress possible
        if load is None or not load.get("ok") or reached >= len(tests):
            break
        records.append(lost_test_record(raw, reached, tests[reached], timeout_s))
        start = reached + 1
        if start >= len(tests):
            break
    last = runs[-1]
    if len(runs) == 1:
        return last
    end = _end_record(last)
    if end:
        records.append(end)
    return RawRun(
        exit_code=last.exit_code,
        signal=last.signal,
        duration_s=sum(r.duration_s for r in runs),
        maxrss_kb=max((r.maxrss_kb or 0 for r in runs), default=0) or None,
        stdout=_merge_text([r.stdout for r in runs]),
        stderr=_merge_text([r.stderr for r in runs]),
        records=records,
        timed_out=False,
        notes=[n for r in runs for n in r.notes]
        + [f"ran in {len(runs)} processes: a test ended the program's process"],
    )
