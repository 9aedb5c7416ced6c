"""Assert tests run against one program process; when a test takes it down, the rest still run.

The judge runs the tests of a job one after another. A test that ends the program's process
(os._exit, a signal, a hang its timer cannot break) gets its result from the judge, which then
ends the job; a job whose judge itself was lost (killed by the program, or by the host's
deadline) gets the result of its current test here. Either way a new job runs the rest.
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
    """How the judge ended: the fork server's `job` record (warm), else the process (cold)."""
    return next((r for r in raw.records if r.get("kind") == "job"), {})


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
    """Run `run_job(start)` until every test has a result; one merged RawRun.

    `run_job` returns a run whose records were already checked (`records.check_job`).
    """
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
        # stop: loading failed or never finished, every test reported, or a broken protocol
        if load is None or not load.get("ok") or reached >= len(tests) or raw.problems:
            break
        judge_ended = any(r.get("kind") == "exit" for r in raw.records)
        if judge_ended and done:
            start = reached  # the judge reported the test that ended the program's process
            continue
        records.append(lost_test_record(raw, reached, tests[reached], timeout_s))
        start = reached + 1
        if start >= len(tests):
            break
    last = runs[-1]
    if len(runs) == 1:
        return last
    records += [r for r in last.records if r.get("kind") in ("exit", "job")]
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
        problems=[p for r in runs for p in r.problems],
    )
