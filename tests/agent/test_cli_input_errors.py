"""No traceback for any input: each bad file, path or number is one sentence naming the fix.

Every case runs the real CLI in-process and checks that it ended by exiting (never by an
uncaught exception) with status 2 and a message that says what is wrong and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.errors import FixloopError
from fixloop.cli import app

BINARY = b"\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe\x00\x01"
LATIN1 = "print('caf\xe9')\n".encode("latin-1")  # not UTF-8: 0xe9 then a quote


def cli(*args: str) -> tuple[int, str]:
    """Exit status and output (stdout and stderr) of `fixloop ARGS`; fails on a traceback."""
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback for {args}: {result.exception!r}\n{result.output}")
    return result.exit_code, result.output


def error(*args: str) -> str:
    """The one-line error of a refused command (status 2)."""
    code, out = cli(*args)
    assert code == 2, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    return lines[0]


def write(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def program(tmp_path: Path) -> Path:
    return write(tmp_path / "prog.py", "def sq(x):\n    return x * x\n")


# ---------------------------------------------------------------- config files
def test_config_not_utf8(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", b"max_turns = 2 # \xff\xfe\n")
    line = error("--config", str(cfg), "config", "show")
    assert str(cfg) in line and "not UTF-8" in line and "save it as UTF-8" in line


def test_config_is_a_directory(tmp_path: Path) -> None:
    line = error("--config", str(tmp_path), "config", "show")
    assert str(tmp_path) in line and "is a directory" in line


def test_default_config_is_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIXLOOP_CONFIG_DIR", str(tmp_path))
    (tmp_path / "config.toml").mkdir()
    line = error("config", "show")
    assert "config.toml" in line and "is a directory" in line


def test_config_option_naming_a_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    line = error("--config", str(missing), "config", "show")
    assert str(missing) in line and "not found" in line


def test_config_show_names_the_given_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "max_turns = 3\n")
    code, out = cli("--config", str(cfg), "config", "show")
    assert code == 0, out
    assert out.splitlines()[0] == f"config file: {cfg}"


@pytest.mark.parametrize(
    ("text", "field"),
    [("exec_timeout = inf\n", "exec_timeout"), ("memory_mb = 99999999999999999\n", "memory_mb")],
)
def test_config_limits_out_of_range(tmp_path: Path, text: str, field: str) -> None:
    cfg = write(tmp_path / "c.toml", text)
    line = error("--config", str(cfg), "config", "show")
    assert field in line


# ---------------------------------------------------------------- exec limits
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e300"])
def test_exec_timeout_must_be_finite_and_sane(program: Path, value: str) -> None:
    line = error("exec", str(program), "--assert", "sq(2) == 4", "--timeout", value)
    assert "--timeout" in line and "seconds" in line


@pytest.mark.parametrize("value", ["99999999999999", str(2**70)])
def test_exec_memory_must_be_sane(program: Path, value: str) -> None:
    line = error("exec", str(program), "--assert", "sq(2) == 4", "--memory", value)
    assert "--memory" in line and "MB" in line


# ---------------------------------------------------------------- exec input files
@pytest.mark.parametrize("data", [BINARY, LATIN1])
def test_exec_program_not_utf8(tmp_path: Path, data: bytes) -> None:
    prog = write(tmp_path / "bad.py", data)
    line = error("exec", str(prog))
    assert str(prog) in line and "UTF-8" in line


@pytest.mark.parametrize("data", [BINARY, LATIN1])
def test_exec_tests_file_not_utf8(program: Path, tmp_path: Path, data: bytes) -> None:
    tests = write(tmp_path / "tests.txt", data)
    line = error("exec", str(program), "--tests", str(tests))
    assert str(tests) in line and "UTF-8" in line


def test_exec_expected_file_not_utf8(program: Path, tmp_path: Path) -> None:
    expected = write(tmp_path / "out.txt", b"\xff\n")
    line = error("exec", str(program), "--expected", str(expected))
    assert str(expected) in line and "UTF-8" in line


def test_exec_binary_stdin_reaches_the_program(tmp_path: Path) -> None:
    prog = write(tmp_path / "echo.py", "import sys\nprint(sys.stdin.buffer.read().hex())\n")
    stdin = write(tmp_path / "in.bin", BINARY)
    code, out = cli("exec", str(prog), "--stdin", str(stdin), "--json")
    assert code == 0, out
    assert json.loads(out)["stdout"]["text"].strip() == BINARY.hex()


def test_exec_text_stdin_still_works(tmp_path: Path) -> None:
    prog = write(tmp_path / "echo.py", "print(input()[::-1])\n")
    stdin = write(tmp_path / "in.txt", "caf\xe9\n")
    code, out = cli("exec", str(prog), "--stdin", str(stdin), "--json")
    assert code == 0, out
    assert json.loads(out)["stdout"]["text"].strip() == "\xe9fac"


# ---------------------------------------------------------------- solve inputs
OFFLINE = ("--base-url", "http://127.0.0.1:9")  # nothing is contacted before the checks


@pytest.mark.parametrize("data", [BINARY, LATIN1])
def test_solve_task_file_not_utf8(tmp_path: Path, data: bytes) -> None:
    task = write(tmp_path / "task.txt", data)
    line = error("solve", f"@{task}", *OFFLINE)
    assert str(task) in line and "UTF-8" in line


def test_solve_task_file_is_a_directory(tmp_path: Path) -> None:
    line = error("solve", f"@{tmp_path}", *OFFLINE)
    assert str(tmp_path) in line and "is a directory" in line


@pytest.mark.parametrize("data", [BINARY, LATIN1])
def test_solve_tests_file_not_utf8(tmp_path: Path, data: bytes) -> None:
    tests = write(tmp_path / "tests.py", data)
    line = error("solve", "Reverse s.", "--tests", str(tests), *OFFLINE)
    assert str(tests) in line and "UTF-8" in line


def test_solve_sessions_dir_that_cannot_be_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = write(tmp_path / "file", "not a directory\n")
    monkeypatch.setenv("FIXLOOP_SESSIONS_DIR", str(blocker / "sessions"))
    line = error("solve", "Reverse s.", "--assert", "assert rev('ab') == 'ba'", *OFFLINE)
    assert str(blocker / "sessions") in line and "FIXLOOP_SESSIONS_DIR" in line


def test_solve_sessions_dir_that_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = write(tmp_path / "sessions", "not a directory\n")
    monkeypatch.setenv("FIXLOOP_SESSIONS_DIR", str(blocker))
    line = error("solve", "Reverse s.", "--assert", "assert rev('ab') == 'ba'", *OFFLINE)
    assert str(blocker) in line and "not a directory" in line


# ---------------------------------------------------------------- eval / seed inputs
def test_eval_suite_file_not_utf8(tmp_path: Path) -> None:
    suite = write(tmp_path / "tasks.jsonl", b'{"text": "caf\xe9", "test_list": []}\n')
    line = error("eval", "--suite", str(suite), *OFFLINE)
    assert str(suite) in line and "UTF-8" in line


def test_eval_sessions_dir_that_cannot_be_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = write(
        tmp_path / "tasks.jsonl",
        json.dumps({"text": "Add a and b.", "task_id": 1, "test_list": ["assert add(1, 2) == 3"]})
        + "\n",
    )
    blocker = write(tmp_path / "file", "x\n")
    monkeypatch.setenv("FIXLOOP_SESSIONS_DIR", str(blocker / "sessions"))
    line = error("eval", "--suite", str(suite), "--out", str(tmp_path / "out"), *OFFLINE)
    assert str(blocker / "sessions") in line
    assert not (tmp_path / "out").exists()


def test_seed_sessions_dir_that_cannot_be_created(tmp_path: Path) -> None:
    suite = write(
        tmp_path / "tasks.jsonl",
        json.dumps({"text": "Add a and b.", "task_id": 1, "test_list": ["assert add(1, 2) == 3"]})
        + "\n",
    )
    blocker = write(tmp_path / "file", "x\n")
    where = blocker / "sessions"
    line = error(
        "data", "seed", "--suite", str(suite), "--split", "train", "--sessions-dir", str(where),
        "--out", str(tmp_path / "progress"), *OFFLINE,
    )  # fmt: skip
    assert str(where) in line and "writable directory" in line
    assert not (tmp_path / "progress").exists()


def test_tui_sessions_dir_that_cannot_be_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fixloop.cli.launch as launch

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the TUI opened with sessions it cannot log")

    monkeypatch.setattr(launch, "_interactive", lambda: True, raising=False)
    monkeypatch.setattr("tui.app.run_app", never)
    blocker = write(tmp_path / "file", "x\n")
    monkeypatch.setenv("FIXLOOP_SESSIONS_DIR", str(blocker / "sessions"))
    line = error(*OFFLINE)
    assert str(blocker / "sessions") in line and "FIXLOOP_SESSIONS_DIR" in line


def test_sandbox_limits_refuse_what_would_overflow() -> None:
    from pydantic import ValidationError

    from agent.sandbox import SandboxLimits

    for bad in ({"timeout_s": float("inf")}, {"timeout_s": float("nan")},
                {"test_timeout_s": 1e300}, {"memory_mb": 2**70}):  # fmt: skip
        with pytest.raises(ValidationError):
            SandboxLimits(**bad)


# ---------------------------------------------------------------- the one error root
class _Broken(FixloopError, KeyError):
    """A KeyError-based user error: printed as its text, not quoted like a KeyError."""


@pytest.mark.parametrize(
    "args",
    [("config", "show"), ("models", "list"), ("sessions", "show", "x"), ("replay", "x"),
     ("data", "summary")],
)  # fmt: skip
def test_any_fixloop_error_in_any_command_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    """No command catches it: the root command prints the message and exits 2."""
    import fixloop.cli.common as common

    def broken(*_args: object, **_kwargs: object) -> None:
        raise _Broken("the settings are broken; fix the config file")

    monkeypatch.setattr(common, "load_settings", broken)
    assert error(*args) == "error: the settings are broken; fix the config file"


def test_fixloop_error_str_is_its_message() -> None:
    from agent.models.registry import RegistryError, UnknownModelError

    assert str(_Broken("no quotes")) == "no quotes"
    assert isinstance(UnknownModelError("x", ["a"]), FixloopError | KeyError)
    assert issubclass(RegistryError, FixloopError | ValueError)
