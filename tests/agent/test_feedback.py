"""The feedback text the model reads: failing tests with input/expected/actual, own frames only."""

from __future__ import annotations

import pytest

from agent.sandbox import (
    CapturedText,
    ExecResult,
    ExecStatus,
    Sandbox,
    SandboxLimits,
    TestResult,
    TestStatus,
    render_feedback,
)

CODE = """\
def median(xs):
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid]


def ratio(a, b):
    return a / b
"""


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(SandboxLimits(timeout_s=1.5, test_timeout_s=1, memory_mb=256))


def test_failed_equality_shows_input_expected_and_actual(sandbox: Sandbox) -> None:
    result = sandbox.run_asserts(
        CODE, ["assert median([1, 2, 3]) == 2", "assert median([1, 2]) == 1.5"]
    )
    text = render_feedback(result, CODE)
    assert text.startswith("1 of 2 tests failed.")
    assert "assert median([1, 2]) == 1.5" in text  # the input
    assert "expected: 1.5" in text
    assert "got:      2" in text
    assert "median([1, 2, 3])" not in text  # passing tests are not repeated


def test_exception_traceback_points_into_the_model_code(sandbox: Sandbox) -> None:
    result = sandbox.run_asserts(CODE, ["assert ratio(1, 0) == 0"])
    text = render_feedback(result, CODE)
    assert "ZeroDivisionError: division by zero" in text
    assert 'File "solution.py", line 8, in ratio' in text
    assert "return a / b" in text
    assert "harness" not in text and "forkserver" not in text and "site-packages" not in text


def test_load_error_is_named_once(sandbox: Sandbox) -> None:
    code = "import math\n\ndef f(x):\n    return mth.sqrt(x)\n\nf(4)\n"
    result = sandbox.run_asserts(code, ["assert f(4) == 2", "assert f(9) == 3"])
    text = render_feedback(result, code)
    assert "NameError" in text and "while loading, so no test ran" in text
    assert "line 4" in text
    assert text.count("NameError: name 'mth' is not defined") == 1


def test_syntax_error(sandbox: Sandbox) -> None:
    code = "def f(x)\n    return x\n"
    text = render_feedback(sandbox.run_asserts(code, ["assert f(1) == 1"]), code)
    assert "SyntaxError" in text and "line 1" in text


def test_timeout_is_named(sandbox: Sandbox) -> None:
    code = "def f():\n    while True:\n        pass\n"
    text = render_feedback(sandbox.run_asserts(code, ["assert f() == 1"]), code)
    assert text.startswith("Timeout: 1 of 1 tests did not finish in time")
    program = render_feedback(sandbox.run_program("while True:\n    pass\n"), "")
    assert program.startswith("Timeout: the program did not finish in time")


def test_memory_is_named(sandbox: Sandbox) -> None:
    code = "data = bytearray(10 * 1024**3)\n"
    text = render_feedback(sandbox.run_program(code), code)
    assert text.startswith("Out of memory")


def test_program_output_mismatch(sandbox: Sandbox) -> None:
    code = "print(sum(range(int(input()))))\n"
    result = sandbox.run_program(code, expected_stdout="10\n", stdin="5\n")
    assert result.passed
    assert render_feedback(result, code) == "The program ran and its output was as expected."
    wrong = sandbox.run_program(code, expected_stdout="15\n", stdin="5\n")
    text = render_feedback(wrong, code)
    assert "expected: '15\\n'" in text and "got:      '10\\n'" in text


def test_crash_with_stderr(sandbox: Sandbox) -> None:
    code = "import sys\nprint('reading', file=sys.stderr)\nsys.exit(3)\n"
    text = render_feedback(sandbox.run_program(code), code)
    assert text.startswith("The program crashed (exit code 3).")
    assert "reading" in text


def test_all_passed(sandbox: Sandbox) -> None:
    result = sandbox.run_asserts(CODE, ["assert ratio(4, 2) == 2"])
    assert render_feedback(result, CODE) == "All 1 tests passed."


def test_length_is_capped() -> None:
    tests = [
        TestResult(name=f"assert f({i}) == {i}", status=TestStatus.FAILED, expected=str(i),
                   actual="x" * 500, expression=f"f({i})")
        for i in range(20)
    ]  # fmt: skip
    result = ExecResult(
        status=ExecStatus.FAILED, tests=tests, stderr=CapturedText(text="e" * 10_000)
    )
    text = render_feedback(result, "", max_chars=1000)
    assert len(text) <= 1000
    assert text.endswith("[... feedback truncated ...]")
    assert "20 of 20 tests failed" in text
