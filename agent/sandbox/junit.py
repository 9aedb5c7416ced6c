"""Per-test results from a pytest JUnit XML report."""

from __future__ import annotations

import os
import re
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

from agent.sandbox.result import TestResult, TestStatus

MESSAGE_LIMIT = 2000
TRACEBACK_LIMIT = 6000  # a deep traceback with each frame's locals (see _without_context_lines)
_EXC_LINE = re.compile(r"^E\s+(\w+(?:Error|Exception|Exit|Interrupt)\b)?", re.MULTILINE)
_LOCATION = re.compile(r"^([^\s:]+\.py):(\d+):(?: (.*))?$", re.MULTILINE)


def _node_id(case: ET.Element) -> str:
    classname = case.get("classname", "")
    name = case.get("name", "")
    file = case.get("file")
    parts = classname.split(".")
    if file is None:
        # classname is "tests.test_x.TestClass" or "test_x": turn the module part into a path
        module_parts = [p for p in parts if not p[:1].isupper()]
        class_parts = [p for p in parts if p[:1].isupper()]
        file = "/".join(module_parts) + ".py" if module_parts else ""
        return "::".join(x for x in (file, *class_parts, name) if x)
    class_parts = [p for p in parts if p[:1].isupper()]
    return "::".join(x for x in (file, *class_parts, name) if x)


def _is_test_file(path: str) -> bool:
    name = Path(path).name
    return name.startswith("test_") or name.endswith("_test.py") or "tests/" in path


def _without_context_lines(details: str) -> str:
    """A long traceback without the source lines around each frame's current line (what
    ``--tb=long`` adds): the ``>`` lines, ``E`` lines, locals and locations are kept, so that a
    deep traceback's frames survive the length cap."""
    kept = [ln for ln in details.splitlines() if not (ln.startswith("    ") or not ln.strip())]
    return "\n".join(kept)


def _failure(case: ET.Element, elem: ET.Element, status: TestStatus) -> TestResult:
    message = elem.get("message", "") or ""
    details = (elem.text or "").strip()
    exc_type = elem.get("type") or None
    lineno = None
    locations = _LOCATION.findall(details)
    if locations and exc_type is None and re.fullmatch(r"\w+", locations[-1][2] or ""):
        exc_type = locations[-1][2]
    # the line in the code under test: the deepest frame outside test files
    for path, line, _ in reversed(locations):
        if not _is_test_file(path):
            lineno = int(line)
            break
    if exc_type and "." in exc_type:
        exc_type = exc_type.rsplit(".", 1)[-1]
    if status == TestStatus.FAILED and exc_type not in (None, "AssertionError", "Failed"):
        status = TestStatus.ERROR  # an exception other than a failed assertion
    if len(details) > TRACEBACK_LIMIT:
        details = _without_context_lines(details)
    if len(details) > TRACEBACK_LIMIT:
        details = details[: TRACEBACK_LIMIT // 2] + "\n...\n" + details[-TRACEBACK_LIMIT // 2 :]
    return TestResult(
        name=_node_id(case),
        status=status,
        message=message[:MESSAGE_LIMIT],
        exception_type=exc_type,
        lineno=lineno,
        duration_s=float(case.get("time", 0) or 0),
        traceback=details or None,
    )


REPORT_CAP = 16 << 20
_SUMMARY = re.compile(
    r"^=*\s*((?:\d+ (?:passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?|"
    r"rerun)(?:, )?)+) in [\d.]+s",
    re.MULTILINE,
)


def read_report(path: Path) -> bytes | None:
    """The report's bytes, or None unless it is a regular file of sane size. Never follows a
    symlink and never blocks on a FIFO planted at the report's path."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > REPORT_CAP:
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(REPORT_CAP)
    except OSError:
        return None
    finally:
        os.close(fd)


def summary_counts(stdout: str) -> dict[str, int] | None:
    """pytest's own closing line ("2 failed, 1 passed in 0.12s") as counts; None if absent."""
    matches = _SUMMARY.findall(stdout)
    if not matches:
        return None
    counts: dict[str, int] = {}
    for part in matches[-1].split(", "):
        number, _, word = part.partition(" ")
        word = {"error": "errors", "warning": "warnings"}.get(word, word)
        counts[word] = int(number)
    return counts


def report_disagreement(tests: list[TestResult], exit_code: int | None, stdout: str) -> str | None:
    """Why a JUnit report cannot be believed, or None: it must agree with pytest's exit status
    and with the summary line pytest printed."""
    bad = sum(t.status in (TestStatus.FAILED, TestStatus.ERROR, TestStatus.TIMEOUT) for t in tests)
    passed = sum(t.status == TestStatus.PASSED for t in tests)
    if exit_code == 0 and bad:
        return f"the report has {bad} failing test(s) but pytest exited with status 0"
    counts = summary_counts(stdout)
    if counts is None:
        return None
    said_bad = counts.get("failed", 0) + counts.get("errors", 0)
    if said_bad != bad or counts.get("passed", 0) != passed:
        return (
            f"the report says {passed} passed and {bad} failed, but pytest's summary says "
            f"{counts.get('passed', 0)} passed and {said_bad} failed or errored"
        )
    return None


def junit_tests(report: Path) -> list[TestResult]:
    """One TestResult per <testcase>; [] when there is no (readable, regular) report."""
    data = read_report(report)
    if data is None:
        return []
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return []
    results = []
    for case in root.iter("testcase"):
        failure = case.find("failure")
        error = case.find("error")
        skipped = case.find("skipped")
        if failure is not None:
            status = TestStatus.FAILED
            message = failure.get("message", "")
            if "Timeout" in message and "Failed: Timeout" in message:
                status = TestStatus.TIMEOUT
            results.append(_failure(case, failure, status))
        elif error is not None:
            results.append(_failure(case, error, TestStatus.ERROR))
        elif skipped is not None:
            results.append(
                TestResult(
                    name=_node_id(case),
                    status=TestStatus.SKIPPED,
                    message=skipped.get("message", ""),
                )
            )
        else:
            results.append(
                TestResult(
                    name=_node_id(case),
                    status=TestStatus.PASSED,
                    duration_s=float(case.get("time", 0) or 0),
                )
            )
    return results
