"""Result records from inside the sandbox: parsed and checked, never trusted blindly.

Only the judge (and, in warm mode, the fork server) holds the result channel, but the host
still accepts nothing it did not expect: per job, at most one `load` record first, then `test`
records for consecutive indices from the job's first test, then at most one `exit` record
(the program's end, from the judge's wait4) and one `job` record (the judge's end, from the
fork server). A torn, malformed, extra or out-of-order record stops the acceptance there and
is reported as a problem, which makes the run an error: never a pass, never a host crash.
"""

from __future__ import annotations

import json
from typing import Any

from agent.sandbox.result import TestStatus

STATUSES = {s.value for s in TestStatus}
_ORDER = {"load": 0, "test": 1, "exit": 2, "job": 3}
_TEXT_FIELDS = ("message", "expression", "expected", "actual", "exception_type", "traceback")


def parse_records(data: bytes) -> tuple[list[dict[str, Any]], list[str]]:
    """JSON-line records and the problems met (a torn last line, a line that is not a record)."""
    lines = data.split(b"\n")
    problems: list[str] = []
    if lines[-1]:
        problems.append("the last result record was cut off")
    records: list[dict[str, Any]] = []
    for line in lines[:-1]:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            problems.append("a result record that is not JSON")
            continue
        if type(record) is not dict or record.get("kind") not in _ORDER:
            problems.append("a result record of no known kind")
            continue
        records.append(record)
    return records, problems


def _valid_test(record: dict[str, Any]) -> bool:
    if record.get("status") not in STATUSES:
        return False
    for key in _TEXT_FIELDS:
        if record.get(key) is not None and type(record[key]) is not str:
            return False
    lineno = record.get("lineno")
    duration = record.get("duration_s")
    return (lineno is None or type(lineno) is int) and (
        duration is None or type(duration) in (int, float)
    )


def _valid_end(record: dict[str, Any]) -> bool:
    return all(
        record.get(key) is None or type(record[key]) is int
        for key in ("exit_code", "signal", "maxrss_kb")
    )


def check_job(
    records: list[dict[str, Any]], start: int, n_tests: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of one job that follow the protocol, up to the first that does not."""
    kept: list[dict[str, Any]] = []
    problems: list[str] = []
    stage = -1
    next_index = start
    for record in records:
        kind = record["kind"]
        order = _ORDER[kind]
        if order < stage or (order == stage and kind != "test"):
            problems.append(f"an unexpected {kind!r} record")
            break
        if kind == "load":
            error = record.get("error")
            if record.get("ok") is not True and not (
                record.get("ok") is False and type(error) is dict
            ):
                problems.append("a malformed 'load' record")
                break
        elif kind == "test":
            if record.get("index") != next_index or next_index >= n_tests:
                problems.append(f"a test record for test {record.get('index')!r}, not {next_index}")
                break
            if not _valid_test(record):
                problems.append(f"a malformed record for test {next_index}")
                break
            next_index += 1
        elif not _valid_end(record):
            problems.append(f"a malformed {kind!r} record")
            break
        stage = order
        kept.append(record)
    return kept, problems
