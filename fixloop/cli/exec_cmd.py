"""`fixloop exec`: run a program (and its tests) in the sandbox and print what happened."""

from __future__ import annotations

import ast
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from agent.sandbox import ExecResult, Sandbox, SandboxLimits, render_feedback
from agent.sandbox.limits import MAX_MEMORY_MB, MAX_TIMEOUT_S, MIN_MEMORY_MB
from fixloop.cli.common import fail, read_input, settings

_STATUS_COLORS = {"passed": typer.colors.GREEN, "failed": typer.colors.YELLOW}


def read_tests_file(path: Path) -> tuple[str, list[str]]:
    """("pytest", [text]) for a file with `def test_...`, else ("asserts", one per statement).

    An asserts file holds one test per line (MBPP style); blank lines and `#` comments are
    skipped; an indented line continues the previous test.
    """
    text = read_input(path, "--tests file")
    if "def test_" in text:
        return "pytest", [text]
    tests: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[:1].isspace() and tests:
            tests[-1] += "\n" + line
        else:
            tests.append(line)
    return "asserts", tests


_LIMIT_OPTIONS = {
    "timeout_s": ("--timeout", f"> 0 and <= {MAX_TIMEOUT_S:g} (seconds)"),
    "memory_mb": ("--memory", f"from {MIN_MEMORY_MB} to {MAX_MEMORY_MB} (MB)"),
}


def _read_stdin(path: Path) -> str | bytes:
    """The --stdin file: text when it is UTF-8, else its bytes, passed through unchanged."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read --stdin file {path}: {exc.strerror or exc}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def as_assert(statement: str) -> str:
    """`f(1) == 2` -> `assert f(1) == 2`; statements that are not expressions stay as given."""
    try:
        tree = ast.parse(statement)
    except SyntaxError:
        return statement
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
        return f"assert {statement.strip()}"
    return statement


def exec_command(
    program: Annotated[Path, typer.Argument(help="The Python program to run.")],
    tests: Annotated[
        Path | None,
        typer.Option(
            "--tests",
            help="A pytest file (def test_...), or a file of assert lines (one per test).",
        ),
    ] = None,
    asserts: Annotated[
        list[str] | None,
        typer.Option("--assert", help="An assert statement to run as a test; repeatable."),
    ] = None,
    stdin: Annotated[
        Path | None, typer.Option("--stdin", help="A file fed to the program's stdin.")
    ] = None,
    expected: Annotated[
        Path | None, typer.Option("--expected", help="The program's expected stdout (a file).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds per program and per test.")
    ] = None,
    memory: Annotated[int | None, typer.Option("--memory", help="Memory limit in MB.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result model as JSON on stdout.")
    ] = False,
) -> None:
    """Run PROGRAM.py in the sandbox, with assert tests, a pytest file, or as a plain program.

    Exits 0 when it passed, 1 when it did not, 2 on bad input.
    """
    if not program.is_file():
        fail(f"program {program} not found: give the path of a .py file")
    if tests is not None and not tests.is_file():
        fail(f"tests file {tests} not found")
    for path in (stdin, expected):
        if path is not None and not path.is_file():
            fail(f"{path} not found")
    if (tests is not None or asserts) and (stdin is not None or expected is not None):
        fail("--stdin/--expected run a plain program; they cannot be combined with tests")
    cfg = settings()
    try:
        limits = SandboxLimits(
            timeout_s=timeout if timeout is not None else cfg.exec_timeout,
            memory_mb=memory if memory is not None else cfg.memory_mb,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "limit"
        option, wanted = _LIMIT_OPTIONS.get(field, (field, "a valid value"))
        fail(f"bad limit {option} {error['input']}: {error['msg']}; give {option} {wanted}")
    code = read_input(program, "program")
    expected_text = read_input(expected, "--expected file", allow_nul=True) if expected else None
    stdin_data = _read_stdin(stdin) if stdin else None
    sandbox = Sandbox(limits)
    result: ExecResult
    statements = [as_assert(a) for a in asserts or []]
    kind = "asserts"
    if tests is not None:
        kind, found = read_tests_file(tests)
        if kind == "pytest" and statements:
            fail("--assert cannot be combined with a pytest --tests file")
        statements += found
    if kind == "pytest":
        result = _run_pytest(sandbox, program, code, statements[0])
    elif statements:
        result = sandbox.run_asserts(code, statements)
    else:
        result = sandbox.run_program(code, expected_stdout=expected_text, stdin=stdin_data)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        _print_human(result, render_feedback(result, code))
    raise typer.Exit(0 if result.passed else 1)


def _run_pytest(sandbox: Sandbox, program: Path, code: str, test_text: str) -> ExecResult:
    """The program under its own module name and as `solution`, next to the test file."""
    work = Path(tempfile.mkdtemp(prefix="fixloop-exec-"))
    try:
        (work / "solution.py").write_text(code, encoding="utf-8")
        if program.stem != "solution":
            (work / program.name).write_text(code, encoding="utf-8")
        (work / "test_program.py").write_text(test_text, encoding="utf-8")
        return sandbox.run_command(
            work,
            "python -m pytest test_program.py",
            timeout_s=3 * sandbox.limits.timeout_s,
            extra_env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _print_human(result: ExecResult, feedback: str) -> None:
    color = _STATUS_COLORS.get(result.status.value, typer.colors.RED)
    memory = f", peak {result.peak_memory_kb // 1024} MB" if result.peak_memory_kb else ""
    typer.secho(
        f"{result.status.value.upper()}  {result.n_passed}/{result.n_tests} tests, "
        f"{result.duration_s:.2f} s{memory}, isolation {result.isolation.level}",
        fg=color,
        bold=True,
    )
    for test in result.tests:
        mark = "ok " if test.status.value == "passed" else test.status.value
        typer.echo(f"  [{mark}] {test.name.splitlines()[0]}")
    if result.stdout.text:
        typer.echo("--- stdout ---")
        typer.echo(result.stdout.text.rstrip("\n"))
    if not result.passed:
        typer.echo("--- feedback ---")
        typer.echo(feedback)
