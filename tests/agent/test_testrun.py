"""Test commands in a prepared directory, through pytest's own JUnit report."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

from agent.sandbox import ExecStatus, Sandbox, SandboxError, SandboxLimits, TestStatus
from agent.sandbox.junit import junit_tests

CODE = "def add(a, b):\n    return a - b\n\n\ndef div(a, b):\n    return a / b\n"
TESTS = """\
from solution import add, div


def test_add():
    assert add(1, 2) == 3


def test_zero():
    assert add(2, 0) == 2


def test_div():
    assert div(1, 0) == 0


class TestGroup:
    def test_method(self):
        assert True
"""


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(SandboxLimits(timeout_s=30, test_timeout_s=5))


def test_pytest_file_gives_one_result_per_test(sandbox: Sandbox) -> None:
    result = sandbox.run_pytest_file(CODE, TESTS)
    assert result.status == ExecStatus.FAILED
    by_name = {t.name: t for t in result.tests}
    assert set(by_name) == {
        "test_solution.py::test_add",
        "test_solution.py::test_zero",
        "test_solution.py::test_div",
        "test_solution.py::TestGroup::test_method",
    }
    add = by_name["test_solution.py::test_add"]
    assert add.status == TestStatus.FAILED
    assert "-1 == 3" in add.message
    div = by_name["test_solution.py::test_div"]
    assert div.status == TestStatus.ERROR
    assert div.exception_type == "ZeroDivisionError"
    assert div.lineno == 6  # in solution.py
    assert by_name["test_solution.py::test_zero"].status == TestStatus.PASSED


def test_passing_pytest_file(sandbox: Sandbox) -> None:
    fixed = CODE.replace("a - b", "a + b").replace("a / b", "a / b if b else 0")
    result = sandbox.run_pytest_file(fixed, TESTS)
    assert result.status == ExecStatus.PASSED, result.stdout.text
    assert result.n_passed == 4


@pytest.mark.skipif(not importlib.util.find_spec("pytest_timeout"), reason="needs pytest-timeout")
def test_hanging_pytest_test_is_that_tests_timeout() -> None:
    sandbox = Sandbox(SandboxLimits(timeout_s=20, test_timeout_s=1))
    tests = "import time\n\ndef test_hang():\n    time.sleep(60)\n\ndef test_ok():\n    pass\n"
    result = sandbox.run_pytest_file("", tests)
    by_name = {t.name.split("::")[-1]: t.status for t in result.tests}
    assert by_name == {"test_hang": TestStatus.TIMEOUT, "test_ok": TestStatus.PASSED}
    assert result.status == ExecStatus.TIMEOUT
    assert result.timed_out_tests == 1


def test_run_command_in_a_prepared_workspace(sandbox: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "core.py").write_text("def square(x):\n    return x * x\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_core.py").write_text(
        textwrap.dedent(
            """
            from pkg.core import square

            def test_square():
                assert square(3) == 9

            def test_square_negative():
                assert square(-2) == -4
            """
        )
    )
    no_plugins = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # faster; plugins are not under test
    result = sandbox.run_command(tmp_path, "python -m pytest -q", extra_env=no_plugins)
    assert result.status == ExecStatus.FAILED
    assert {t.name: t.status for t in result.tests} == {
        "tests/test_core.py::test_square": TestStatus.PASSED,
        "tests/test_core.py::test_square_negative": TestStatus.FAILED,
    }
    assert not (tmp_path / ".fixloop-junit.xml").exists()


def test_run_command_plain_exit_status(sandbox: Sandbox, tmp_path: Path) -> None:
    ok = sandbox.run_command(tmp_path, 'python -c \'open("out.txt", "w").write("x")\'')
    assert ok.status == ExecStatus.PASSED and ok.tests == []
    assert (tmp_path / "out.txt").read_text() == "x"  # the workdir is writable
    bad = sandbox.run_command(tmp_path, "python -c 'raise SystemExit(5)'")
    assert (bad.status, bad.exit_code) == (ExecStatus.ERROR, 5)


def test_run_command_in_a_subdirectory_sees_its_root(sandbox: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "shared.txt").write_text("from the root")
    sub = tmp_path / "sub"
    sub.mkdir()
    cmd = "python -c 'print(open(\"../shared.txt\").read())'"
    result = sandbox.run_command(sub, cmd, root=tmp_path)
    assert result.status == ExecStatus.PASSED, result.stderr.text
    assert result.stdout.text == "from the root\n"
    with pytest.raises(SandboxError, match="must contain"):
        sandbox.run_command(tmp_path, "true", root=sub)


def test_run_command_timeout(sandbox: Sandbox, tmp_path: Path) -> None:
    result = sandbox.run_command(tmp_path, "python -c 'while True: pass'", timeout_s=1)
    assert result.status == ExecStatus.TIMEOUT


def test_run_command_bad_input(sandbox: Sandbox, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="not a directory"):
        sandbox.run_command(tmp_path / "missing", "pytest")
    with pytest.raises(SandboxError, match="empty command"):
        sandbox.run_command(tmp_path, "  ")


def test_junit_report_parsing(tmp_path: Path) -> None:
    report = tmp_path / "r.xml"
    report.write_text(
        """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="3">
<testcase classname="tests.test_a" name="test_ok" time="0.01"/>
<testcase classname="tests.test_a.TestK" name="test_bad" time="0.02">
<failure message="assert 1 == 2">def test_bad():
&gt;   assert f() == 2
E   assert 1 == 2

src/mod.py:7: in f
tests/test_a.py:4: AssertionError</failure></testcase>
<testcase classname="tests.test_a" name="test_skip"><skipped message="no"/></testcase>
</testsuite></testsuites>"""
    )
    ok, bad, skip = junit_tests(report)
    assert (ok.name, ok.status) == ("tests/test_a.py::test_ok", TestStatus.PASSED)
    assert bad.name == "tests/test_a.py::TestK::test_bad"
    assert (bad.status, bad.message, bad.lineno) == (TestStatus.FAILED, "assert 1 == 2", 7)
    assert skip.status == TestStatus.SKIPPED
    assert junit_tests(tmp_path / "none.xml") == []
