"""`fixloop exec`: the sandbox from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixloop.cli import app
from fixloop.cli.exec_cmd import as_assert, read_tests_file

PROGRAM = (
    'def sq(x):\n    return x * x\n\nif __name__ == "__main__":\n    print(sq(int(input())))\n'
)


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "prog.py"
    path.write_text(PROGRAM)
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["exec", *args])
    return result.exit_code, result.output


def test_asserts_file_and_feedback(program: Path, tmp_path: Path) -> None:
    tests = tmp_path / "tests.txt"
    tests.write_text("# squares\nassert sq(2) == 4\n\nassert sq(3) == 10\n")
    code, out = run(str(program), "--tests", str(tests))
    assert code == 1
    assert "FAILED  1/2 tests" in out
    assert "expected: 10" in out and "got:      9" in out


def test_assert_options_and_json(program: Path) -> None:
    code, out = run(
        str(program), "--assert", "sq(2) == 4", "--assert", "assert sq(0) == 0", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["status"] == "passed"
    assert [t["name"] for t in data["tests"]] == ["assert sq(2) == 4", "assert sq(0) == 0"]
    assert data["isolation"]["level"] in ("bwrap", "netns", "process")


def test_plain_program_with_stdin_and_expected(program: Path, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("7\n")
    (tmp_path / "out.txt").write_text("49\n")
    code, out = run(str(program), "--stdin", str(tmp_path / "in.txt"), "--expected",
                    str(tmp_path / "out.txt"))  # fmt: skip
    assert code == 0, out
    assert "49" in out


def test_pytest_file(program: Path, tmp_path: Path) -> None:
    tests = tmp_path / "test_prog.py"
    tests.write_text("from prog import sq\n\ndef test_sq():\n    assert sq(3) == 9\n")
    code, out = run(str(program), "--tests", str(tests), "--json")
    assert code == 0, out
    assert json.loads(out)["tests"][0]["name"].endswith("::test_sq")


def test_timeout_and_memory_flags(tmp_path: Path) -> None:
    spin = tmp_path / "spin.py"
    spin.write_text("while True:\n    pass\n")
    code, out = run(str(spin), "--timeout", "1", "--json")
    assert code == 1 and json.loads(out)["status"] == "timeout"
    hog = tmp_path / "hog.py"
    hog.write_text("x = bytearray(2 * 1024**3)\n")
    code, out = run(str(hog), "--memory", "128", "--json")
    assert code == 1 and json.loads(out)["status"] == "memory"


def test_bad_input_is_explained(program: Path, tmp_path: Path) -> None:
    code, out = run(str(tmp_path / "missing.py"))
    assert code == 2 and "not found" in out
    code, out = run(str(program), "--timeout", "0")
    assert code == 2 and "--timeout > 0" in out


def test_helpers(tmp_path: Path) -> None:
    assert as_assert("f(1) == 2") == "assert f(1) == 2"
    assert as_assert("assert f(1)") == "assert f(1)"
    assert as_assert("x = 1") == "x = 1"
    path = tmp_path / "t.txt"
    path.write_text("assert f(1)\nfor i in range(2):\n    assert f(i)\n")
    assert read_tests_file(path) == (
        "asserts",
        ["assert f(1)", "for i in range(2):\n    assert f(i)"],
    )
