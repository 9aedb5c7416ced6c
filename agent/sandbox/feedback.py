"""The text the model sees on its next turn: what failed, with what input, expected and actual.

RLEF/LeTI-style execution feedback: failing tests with their input (the test itself), expected
and actual values; the error type and message with the line of the model's program it came
from; the traceback trimmed to the model's own frames; timeouts and memory kills named as such.
"""

from __future__ import annotations

import signal

from agent.sandbox.outcome import LOAD_ERROR_PREFIX
from agent.sandbox.result import ExecResult, ExecStatus, TestResult, TestStatus

MAX_TESTS_SHOWN = 5
OUTPUT_EXCERPT = 600


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _source_line(code: str, lineno: int | None) -> str:
    if not lineno:
        return ""
    lines = code.splitlines()
    if 1 <= lineno <= len(lines):
        return f"    line {lineno}: {lines[lineno - 1].strip()}"
    return ""


def _clip(text: str, limit: int) -> str:
    text = text.strip("\n")
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} chars cut ...]\n{text[-half:]}"


def _tail(text: str, limit: int) -> str:
    text = text.strip("\n")
    return text if len(text) <= limit else "[...]\n" + text[-limit:]


def _test_block(test: TestResult, code: str) -> str:
    lines = [f"Test: {test.name}"]
    if test.status == TestStatus.TIMEOUT:
        lines.append(f"  timed out: {test.message or 'the test did not finish in time'}")
        lines.append("  (an infinite loop, or an algorithm too slow for this input?)")
        return "\n".join(lines)
    if test.expected is not None or test.actual is not None:
        expr = test.expression or "result"
        lines.append(f"  expected: {test.expected}")
        lines.append(f"  got:      {test.actual}   ({expr})")
        if test.message and not test.message.startswith(expr):
            lines.append(f"  {test.message}")
        return "\n".join(lines)
    if test.exception_type == "MemoryError":
        lines.append("  ran out of memory (MemoryError): the memory limit was reached")
    elif test.message:
        lines.append(f"  {test.status.value}: {test.message}")
    if test.traceback and test.exception_type not in (None, "AssertionError"):
        lines.append(_indent(_trim_traceback(test.traceback), "  "))
    elif src := _source_line(code, test.lineno):
        lines.append(src)
    return "\n".join(lines)


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _trim_traceback(text: str) -> str:
    """Drop an empty 'Traceback' header (no frames of the model's own) and clip the length."""
    lines = text.strip("\n").splitlines()
    if len(lines) >= 2 and lines[0].startswith("Traceback") and not lines[1].startswith("  File"):
        lines = lines[1:]
    return _clip("\n".join(lines), 1200)


def _headline(result: ExecResult) -> str:
    failing = [t for t in result.tests if t.status != TestStatus.PASSED]
    n = result.n_tests
    match result.status:
        case ExecStatus.PASSED:
            if n == 1 and result.tests[0].name == "stdout":
                return "The program ran and its output was as expected."
            return f"All {n} tests passed." if n else "The program ran successfully."
        case ExecStatus.FAILED:
            return f"{len(failing)} of {n} tests failed." if n else "The program's output is wrong."
        case ExecStatus.TIMEOUT:
            if result.timed_out_tests:
                return (
                    f"Timeout: {result.timed_out_tests} of {n} tests did not finish in time "
                    f"({n - len(failing)} passed)."
                )
            return "Timeout: the program did not finish in time and was killed."
        case ExecStatus.MEMORY:
            return "Out of memory: the program exceeded its memory limit."
        case ExecStatus.KILLED:
            sig = _signal_name(result.signal) if result.signal else "a signal"
            return f"The program was killed by {sig}."
        case _:
            if result.exit_code not in (None, 0):
                return f"The program crashed (exit code {result.exit_code})."
            return "The program crashed."


def render_feedback(result: ExecResult, code: str, max_chars: int = 3000) -> str:
    """One result as the text the model reads next turn, at most `max_chars` characters."""
    parts = [_headline(result)]
    failing = [t for t in result.tests if t.status not in (TestStatus.PASSED, TestStatus.SKIPPED)]
    load_errors = [t for t in failing if t.message.startswith(LOAD_ERROR_PREFIX)]
    program_error = [t for t in failing if t.name == "program"]
    if load_errors and len(load_errors) == len(failing):
        first = load_errors[0]
        parts[0] = (
            f"Error: your program raised {first.exception_type} while loading, so no test ran."
        )
        parts.append(_trim_traceback(first.traceback or first.message) or "")
        if not first.traceback and (src := _source_line(code, first.lineno)):
            parts.append(src)
    elif program_error:
        first = program_error[0]
        parts.append(_trim_traceback(first.traceback or first.message))
        failing = [t for t in failing if t.name != "program"]
        parts += [_test_block(t, code) for t in failing]
    else:
        for test in failing[:MAX_TESTS_SHOWN]:
            parts.append(_test_block(test, code))
        if len(failing) > MAX_TESTS_SHOWN:
            parts.append(f"... and {len(failing) - MAX_TESTS_SHOWN} more failing tests.")
    if result.status != ExecStatus.PASSED:
        stderr = result.stderr.text.strip()
        shown = "\n".join(parts)
        if stderr and stderr[-200:] not in shown:
            parts.append("stderr (end):\n" + _tail(stderr, OUTPUT_EXCERPT))
        stdout = result.stdout.text.strip()
        if stdout and not result.tests:
            parts.append("stdout (end):\n" + _tail(stdout, OUTPUT_EXCERPT))
    if result.stdout.truncated_bytes:
        parts.append(f"(stdout was {result.stdout.total_bytes} bytes; only part is kept)")
    text = "\n\n".join(p for p in parts if p)
    if len(text) > max_chars:
        marker = "\n[... feedback truncated ...]"
        text = text[: max(0, max_chars - len(marker))] + marker
    return text
