"""The sandbox on ordinary programs: per-assert results, programs with stdin/stdout, statuses."""

from __future__ import annotations

import threading

import pytest

from agent.sandbox import (
    CapturedText,
    ExecStatus,
    Sandbox,
    SandboxError,
    SandboxLimits,
    TestStatus,
    warm,
)
from agent.sandbox.process import RawRun
from agent.sandbox.resume import lost_test_record

CODE = """\
def double(x):
    return x * 2


def inverse(x):
    return 1 / x
"""


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(SandboxLimits(timeout_s=5, test_timeout_s=1.5, memory_mb=512))


def test_all_asserts_pass(sandbox: Sandbox) -> None:
    result = sandbox.run_asserts(CODE, ["assert double(2) == 4", "assert inverse(2) == 0.5"])
    assert result.status == ExecStatus.PASSED
    assert result.passed and result.n_passed == 2 and result.n_tests == 2
    assert result.exit_code == 0
    assert result.peak_memory_kb and result.peak_memory_kb > 1000


def test_failing_equality_reports_expression_expected_and_actual(sandbox: Sandbox) -> None:
    result = sandbox.run_asserts(CODE, ["assert double(2) == 4", "assert double(3) == 7"])
    assert result.status == ExecStatus.FAILED
    ok, bad = result.tests
    assert ok.status == TestStatus.PASSED
    assert bad.status == TestStatus.FAILED
    assert (bad.expression, bad.expected, bad.actual) == ("double(3)", "7", "6")
    assert bad.name == "assert double(3) == 7"


def test_each_side_is_evaluated_once(sandbox: Sandbox) -> None:
    code = "calls = []\ndef f():\n    calls.append(1)\n    return len(calls)\n"
    result = sandbox.run_asserts(code, ["assert f() == 2"])
    assert result.tests[0].actual == "1"  # evaluated once, as pytest's rewriting does


def test_other_comparisons_and_plain_asserts(sandbox: Sandbox) -> None:
    result = sandbox.run_asserts(
        CODE,
        ["assert double(1) < 0", "assert double(0)", "assert double(1) == 2, 'msg'"],
    )
    lt, plain, good = result.tests
    assert lt.status == TestStatus.FAILED and "double(1) = 2" in lt.message
    assert plain.status == TestStatus.FAILED
    assert good.status == TestStatus.PASSED


def test_exception_reports_type_message_and_line_in_model_code(sandbox: Sandbox) -> None:
    result = sandbox.run_asserts(CODE, ["assert inverse(0) == 1"])
    test = result.tests[0]
    assert result.status == ExecStatus.FAILED
    assert test.status == TestStatus.ERROR
    assert test.exception_type == "ZeroDivisionError"
    assert "division by zero" in test.message
    assert test.lineno == 6
    assert test.traceback and 'File "solution.py", line 6' in test.traceback
    assert "harness" not in test.traceback


def test_traceback_shows_the_failing_tests_own_source(sandbox: Sandbox) -> None:
    """Tests of equal length must not show each other's line (linecache kept current)."""
    tests = ["assert inverse(1) == 1", "assert inverse(0) == 0"]
    result = sandbox.run_asserts(CODE, tests)
    assert result.tests[1].traceback and "assert inverse(0) == 0" in result.tests[1].traceback
    assert "inverse(1)" not in result.tests[1].traceback


def test_hanging_test_is_that_tests_timeout(sandbox: Sandbox) -> None:
    code = CODE + "\ndef spin():\n    while True:\n        pass\n"
    result = sandbox.run_asserts(code, ["assert spin() == 1", "assert double(1) == 2"])
    hang, ok = result.tests
    assert hang.status == TestStatus.TIMEOUT
    assert ok.status == TestStatus.PASSED  # the run went on after the hang
    assert result.status == ExecStatus.TIMEOUT
    assert result.timed_out_tests == 1


@pytest.mark.parametrize(
    "hang",
    [
        "import time\n    while True:\n        try:\n            time.sleep(0.05)\n"
        "        except BaseException:\n            pass",
        "import itertools\n    return sum(itertools.repeat(1))",  # C level: no timer breaks it
    ],
    ids=["swallows-the-timer", "c-level"],
)
def test_unbreakable_hang_is_killed_and_the_other_tests_still_run(
    sandbox: Sandbox, hang: str
) -> None:
    code = CODE + f"\ndef stuck():\n    {hang}\n"
    tests = ["assert double(1) == 2", "assert stuck() == 1", "assert double(2) == 4"]
    result = sandbox.run_asserts(code, tests)
    assert [t.status for t in result.tests] == [
        TestStatus.PASSED,
        TestStatus.TIMEOUT,
        TestStatus.PASSED,
    ]
    assert result.status == ExecStatus.TIMEOUT
    assert any("processes" in note for note in result.isolation.notes)


def test_tests_run_in_order_in_one_module(sandbox: Sandbox) -> None:
    """As in MBPP's and HumanEval's harnesses: one module, tests in order, state shared."""
    code = "items = []\ndef add(x):\n    items.append(x)\n    return len(items)\n"
    result = sandbox.run_asserts(code, ["assert add(1) == 1", "assert add(2) == 2"])
    assert result.passed


def test_setup_code_runs_first(sandbox: Sandbox) -> None:
    result = sandbox.run_asserts("def f():\n    return K\n", ["assert f() == 3"], setup="K = 3")
    assert result.passed


def test_syntax_error_is_an_error_with_its_line(sandbox: Sandbox) -> None:
    result = sandbox.run_asserts("def f(:\n    pass\n", ["assert f() == 1"])
    assert result.status == ExecStatus.ERROR
    assert result.tests[0].exception_type == "SyntaxError"
    assert result.tests[0].lineno == 1


def test_exception_at_import_marks_every_test(sandbox: Sandbox) -> None:
    result = sandbox.run_asserts("x = 1\ny = undefined_name\n", ["assert 1 == 1", "assert x"])
    assert result.status == ExecStatus.ERROR
    assert [t.status for t in result.tests] == [TestStatus.ERROR, TestStatus.ERROR]
    assert result.tests[0].exception_type == "NameError"
    assert result.tests[0].lineno == 2


def test_program_with_stdin_and_expected_stdout(sandbox: Sandbox) -> None:
    code = "n = int(input())\nfor i in range(n):\n    print(i * i)\n"
    result = sandbox.run_program(code, expected_stdout="0\n1\n4\n", stdin="3\n")
    assert result.status == ExecStatus.PASSED, result
    assert result.stdout.text == "0\n1\n4\n"
    wrong = sandbox.run_program(code, expected_stdout="0\n1\n5\n", stdin="3\n")
    assert wrong.status == ExecStatus.FAILED
    check = wrong.tests[0]
    assert check.status == TestStatus.FAILED and check.expected and check.actual


def test_program_exception_and_exit_codes(sandbox: Sandbox) -> None:
    crash = sandbox.run_program("print('hi')\nraise ValueError('bad value')\n")
    assert crash.status == ExecStatus.ERROR
    assert crash.stdout.text == "hi\n"
    assert "ValueError: bad value" in crash.stderr.text
    assert crash.tests[0].lineno == 2
    assert sandbox.run_program("import sys\nsys.exit(0)\n").status == ExecStatus.PASSED
    exit4 = sandbox.run_program("import sys\nsys.exit(4)\n")
    assert (exit4.status, exit4.exit_code) == (ExecStatus.ERROR, 4)


def test_program_main_block_runs_only_as_a_program(sandbox: Sandbox) -> None:
    code = "def f():\n    return 1\nif __name__ == '__main__':\n    print('main')\n"
    assert sandbox.run_program(code).stdout.text == "main\n"
    result = sandbox.run_asserts(code, ["assert f() == 1"])
    assert result.passed and result.stdout.text == ""


def test_program_output_is_captured_and_unicode_survives(sandbox: Sandbox) -> None:
    result = sandbox.run_program("import sys\nprint('héllo ✓')\nprint('err', file=sys.stderr)\n")
    assert result.stdout.text == "héllo ✓\n"
    assert result.stderr.text == "err\n"


def test_isolation_is_reported(sandbox: Sandbox) -> None:
    result = sandbox.run_program("pass\n")
    assert result.isolation.level in ("bwrap", "netns", "process")
    if result.isolation.level == "bwrap":
        assert result.isolation.network and result.isolation.filesystem == "private"


def test_limits_validation() -> None:
    with pytest.raises(ValueError):
        SandboxLimits(timeout_s=0)
    with pytest.raises(SandboxError, match="not available"):
        Sandbox(isolation_level="chroot")


def test_warm_server_outlives_the_thread_that_started_it() -> None:
    """bwrap's parent-death signal follows the starting *thread*; servers must not die with it."""
    warm.POOL.close()  # no idle servers: the next run starts one in the short-lived thread
    sandbox = Sandbox(SandboxLimits(timeout_s=5))
    ran, go = threading.Event(), threading.Event()

    def short_lived() -> None:  # starts a server, leaves it in the pool, ends on `go`
        sandbox.run_program("pass\n")
        ran.set()
        go.wait()

    thread = threading.Thread(target=short_lived)
    thread.start()
    assert ran.wait(30)
    timer = threading.Timer(0.3, go.set)  # that thread ends in the middle of the next run
    timer.start()
    result = sandbox.run_program("import time\ntime.sleep(1)\nprint('done')\n")
    thread.join()
    timer.join()
    assert result.status == ExecStatus.PASSED, result.isolation.notes
    assert result.stdout.text == "done\n"


@pytest.mark.parametrize(
    ("sig", "code", "timed_out", "status", "words"),
    [
        (None, None, True, "timeout", "did not finish"),
        (24, None, False, "timeout", "CPU-time limit"),  # SIGXCPU
        (11, None, False, "error", "recursion"),  # SIGSEGV
        (None, 3, False, "error", "code 3"),
    ],
)
def test_the_test_that_ended_its_process_gets_the_cause(
    sig: int | None, code: int | None, timed_out: bool, status: str, words: str
) -> None:
    raw = RawRun(
        exit_code=code,
        signal=sig,
        duration_s=1.0,
        maxrss_kb=None,
        stdout=CapturedText(),
        stderr=CapturedText(),
        timed_out=timed_out,
    )
    record = lost_test_record(raw, 2, "assert f(2) == 4", 1.5)
    assert (record["index"], record["name"], record["status"]) == (2, "assert f(2) == 4", status)
    assert words in record["message"]
