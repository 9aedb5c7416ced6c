"""Turning what a process did (RawRun + harness records) into an ExecResult."""

from __future__ import annotations

import signal
from typing import Any

from agent.sandbox.process import RawRun
from agent.sandbox.result import ExecResult, ExecStatus, Isolation, TestResult, TestStatus

MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")
TEST_FIELDS = set(TestResult.model_fields)
LOAD_ERROR_PREFIX = "not run: loading the program raised "


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _test_from_record(rec: dict[str, Any]) -> TestResult:
    data = {k: v for k, v in rec.items() if k in TEST_FIELDS}
    if not data.get("message") and rec.get("exception_type"):
        data["message"] = rec["exception_type"]
    elif rec.get("exception_type") and rec["status"] == "error":
        data["message"] = f"{rec['exception_type']}: {rec.get('message', '')}"
    return TestResult.model_validate(data)


def _end_of_process(raw: RawRun) -> tuple[int | None, int | None, int | None]:
    """(exit_code, signal, maxrss_kb) of the program, preferring the supervisor's report."""
    for rec in raw.records:
        if rec.get("kind") == "exit":
            rss = rec.get("maxrss_kb") or raw.maxrss_kb
            return rec.get("exit_code"), rec.get("signal"), rss
    return raw.exit_code, raw.signal, raw.maxrss_kb


def _crash_status(raw: RawRun, exit_code: int | None, sig: int | None) -> ExecStatus:
    """The status of a process that ended without reporting a result of its own."""
    if raw.timed_out:
        return ExecStatus.TIMEOUT
    if sig == signal.SIGXCPU:
        return ExecStatus.TIMEOUT
    if any(marker in raw.stderr.text for marker in MEMORY_MARKERS):
        return ExecStatus.MEMORY
    if sig is not None:
        return ExecStatus.KILLED
    return ExecStatus.PASSED if exit_code == 0 else ExecStatus.ERROR


def _load_error_tests(tests: list[str], error: dict[str, Any]) -> list[TestResult]:
    message = f"{error['exception_type']}: {error['message']}"
    return [
        TestResult(
            name=t,
            status=TestStatus.ERROR,
            message=f"{LOAD_ERROR_PREFIX}{message}",
            exception_type=error["exception_type"],
            lineno=error.get("lineno"),
            traceback=error.get("traceback") if i == 0 else None,
        )
        for i, t in enumerate(tests)
    ]


def _protocol_error(raw: RawRun, result: ExecResult) -> ExecResult:
    """A run whose result records broke the protocol is an error, whatever they said."""
    if raw.problems:
        result.status = ExecStatus.ERROR
        result.isolation.notes.append(
            "result records broke the protocol (counted as an error): " + "; ".join(raw.problems)
        )
    return result


def asserts_result(raw: RawRun, tests: list[str], isolation: Isolation) -> ExecResult:
    return _protocol_error(raw, _asserts_result(raw, tests, isolation))


def _asserts_result(raw: RawRun, tests: list[str], isolation: Isolation) -> ExecResult:
    exit_code, sig, rss = _end_of_process(raw)
    load = next((r for r in raw.records if r.get("kind") == "load"), None)
    results = [_test_from_record(r) for r in raw.records if r.get("kind") == "test"]
    done = {t.name for t in results}
    status: ExecStatus
    if load is not None and not load["ok"]:
        error = load["error"]
        results = _load_error_tests(tests, error)
        status = ExecStatus.MEMORY if error["exception_type"] == "MemoryError" else ExecStatus.ERROR
    elif len(results) < len(tests):  # the run ended before every test reported
        reason = "the program timed out" if raw.timed_out else "the program ended"
        if load is None:
            reason += " while loading"
        results += [
            TestResult(
                name=t,
                status=TestStatus.TIMEOUT if raw.timed_out else TestStatus.ERROR,
                message=f"not run: {reason}",
            )
            for t in tests
            if t not in done
        ]
        status = _crash_status(raw, exit_code, sig)
        if status == ExecStatus.PASSED:
            status = ExecStatus.ERROR
    else:
        status = _status_from_tests(results)
    return ExecResult(
        status=status,
        tests=results,
        exit_code=exit_code,
        signal=sig,
        duration_s=raw.duration_s,
        peak_memory_kb=rss,
        stdout=raw.stdout,
        stderr=raw.stderr,
        isolation=isolation,
        timed_out_tests=sum(t.status == TestStatus.TIMEOUT for t in results),
    )


def _status_from_tests(results: list[TestResult]) -> ExecStatus:
    if all(t.status in (TestStatus.PASSED, TestStatus.SKIPPED) for t in results):
        return ExecStatus.PASSED
    if any(t.status == TestStatus.TIMEOUT for t in results):
        return ExecStatus.TIMEOUT
    if any(t.exception_type == "MemoryError" for t in results):
        return ExecStatus.MEMORY
    return ExecStatus.FAILED


def program_result(raw: RawRun, expected_stdout: str | None, isolation: Isolation) -> ExecResult:
    return _protocol_error(raw, _program_result(raw, expected_stdout, isolation))


def _program_result(raw: RawRun, expected_stdout: str | None, isolation: Isolation) -> ExecResult:
    exit_code, sig, rss = _end_of_process(raw)
    program = next((r for r in raw.records if r.get("kind") == "exit"), None)
    load = next((r for r in raw.records if r.get("kind") == "load"), None)
    tests: list[TestResult] = []
    if load is not None and not load["ok"]:
        error = load["error"]
        status = ExecStatus.MEMORY if error["exception_type"] == "MemoryError" else ExecStatus.ERROR
        tests = [
            TestResult(
                name="program",
                status=TestStatus.ERROR,
                message=f"{error['exception_type']}: {error['message']}",
                exception_type=error["exception_type"],
                lineno=error.get("lineno"),
                traceback=error.get("traceback"),
            )
        ]
    elif program is None or sig is not None:  # the judge or the program was killed
        status = _crash_status(raw, exit_code, sig)
        if status == ExecStatus.PASSED:
            status = ExecStatus.ERROR
    elif exit_code != 0:
        status = ExecStatus.ERROR
    else:
        status = ExecStatus.PASSED
    if expected_stdout is not None:
        check = stdout_check(raw.stdout.text, expected_stdout, raw.stdout.truncated_bytes)
        if status == ExecStatus.PASSED and check.status != TestStatus.PASSED:
            status = ExecStatus.FAILED
        if status not in (ExecStatus.PASSED, ExecStatus.FAILED):
            check.status = TestStatus.TIMEOUT if status == ExecStatus.TIMEOUT else TestStatus.ERROR
        tests.append(check)
    return ExecResult(
        status=status,
        tests=tests,
        exit_code=exit_code,
        signal=sig,
        duration_s=raw.duration_s,
        peak_memory_kb=rss,
        stdout=raw.stdout,
        stderr=raw.stderr,
        isolation=isolation,
    )


def normalise_output(text: str) -> str:
    """Compared leniently: trailing spaces on each line and trailing blank lines ignored."""
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).rstrip("\n")


def stdout_check(actual: str, expected: str, truncated: int = 0) -> TestResult:
    ok = truncated == 0 and normalise_output(actual) == normalise_output(expected)
    return TestResult(
        name="stdout",
        status=TestStatus.PASSED if ok else TestStatus.FAILED,
        message="" if ok else "the program's output differs from the expected output",
        expression="stdout",
        expected=None if ok else repr(expected[:2000]),
        actual=None if ok else repr(actual[:2000]),
    )


def command_result(raw: RawRun, tests: list[TestResult], isolation: Isolation) -> ExecResult:
    """A test command (e.g. pytest): exit status, and per-test results where a report exists."""
    status = _crash_status(raw, raw.exit_code, raw.signal)
    if tests and status in (ExecStatus.PASSED, ExecStatus.ERROR):
        by_tests = _status_from_tests(tests)
        # a non-zero exit with every reported test passing (e.g. a collection error): error
        status = ExecStatus.ERROR if by_tests == ExecStatus.PASSED and raw.exit_code else by_tests
    return ExecResult(
        status=status,
        tests=tests,
        exit_code=raw.exit_code,
        signal=raw.signal,
        duration_s=raw.duration_s,
        peak_memory_kb=raw.maxrss_kb,
        stdout=raw.stdout,
        stderr=raw.stderr,
        isolation=isolation,
        timed_out_tests=sum(t.status == TestStatus.TIMEOUT for t in tests),
    )
