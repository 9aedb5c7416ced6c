"""`fixloop solve "TASK"`: one headless episode of the repair loop, logged like any other.

Exit status: 0 when the final program passes its checks, 1 when it does not,
2 for bad usage, 3 when the model or sandbox failed (the message says why),
4 when it passed but `--accept` could not commit it (nothing was changed; the
message says why, and `fixloop accept SESSION` can commit it once that is fixed).
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from fixloop.cli.common import (
    AdapterOpt,
    BaseUrlOpt,
    ModelOpt,
    NCtxOpt,
    PolicyOpt,
    check_sessions_dir,
    fail,
    read_input,
    settings,
)

EXIT = {"passed": 0, "failed": 1, "cancelled": 1, "error": 3}


def parse_tests_file(path: Path) -> tuple[list[str], str, str | None]:
    """Split a tests file into (assert statements, setup code, pytest file text).

    A file with `test_*` functions is a pytest file; otherwise each top-level
    `assert` is one test and the other top-level statements (imports, helpers)
    are setup run before them.
    """
    text = read_input(path, "--tests file")
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        fail(f"--tests {path} is not valid Python (line {exc.lineno}: {exc.msg})")
    if any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
        for node in tree.body
    ):
        return [], "", text
    asserts = [
        ast.get_source_segment(text, n) or "" for n in tree.body if isinstance(n, ast.Assert)
    ]
    setup = "\n".join(
        ast.get_source_segment(text, n) or "" for n in tree.body if not isinstance(n, ast.Assert)
    )
    if not asserts:
        fail(f"--tests {path} has no assert statements and no test_* functions")
    return asserts, setup, None


def solve(
    task: Annotated[str, typer.Argument(help="The task, in words (or @FILE to read it).")],
    tests: Annotated[
        Path | None,
        typer.Option("--tests", help="A file of assert statements, or a pytest file."),
    ] = None,
    asserts: Annotated[
        list[str] | None,
        typer.Option("--assert", help="An assert statement the code must pass (repeatable)."),
    ] = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    adapter: AdapterOpt = None,
    n_ctx: NCtxOpt = None,
    max_turns: Annotated[
        int | None, typer.Option("--max-turns", help="Attempts before giving up (default 4).")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", help="Tokens per reply at most.")
    ] = None,
    policy: PolicyOpt = None,
    entry_point: Annotated[
        str | None, typer.Option("--entry-point", help="Name the function must have.")
    ] = None,
    repo: Annotated[
        Path | None,
        typer.Option("--repo", help="Work on the files of this git repository (workspace task)."),
    ] = None,
    test_cmd: Annotated[
        str | None,
        typer.Option("--test-cmd", help="Workspace check, e.g. 'pytest -x tests/test_foo.py'."),
    ] = None,
    files: Annotated[
        list[str] | None, typer.Option("--file", help="Workspace file the task is about.")
    ] = None,
    accept: Annotated[
        bool, typer.Option("--accept", help="Accept the result when it passes (commits in --repo).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the outcome, session id and log path as JSON.")
    ] = False,
) -> None:
    """Solve one task headlessly: write, run, repair until the checks pass or turns run out."""
    from agent.backends import BackendError, make_backend
    from agent.events import Committed, EpisodeFinished, ErrorRaised, Task, TaskKind, TokenDelta
    from agent.session import AgentSession

    if task.startswith("@"):
        task = read_input(Path(task[1:]), "the task file")
    if not task.strip():
        fail("the task is empty; describe what the code should do")
    cfg = settings(
        model=model,
        base_url=base_url,
        adapter=adapter,
        n_ctx=n_ctx,
        max_turns=max_turns,
        max_tokens=max_tokens,
        policy=policy,
    )
    tests_list = list(asserts or [])
    setup, test_file = "", None
    if tests is not None:
        file_asserts, setup, test_file = parse_tests_file(tests)
        tests_list += file_asserts
    for statement in tests_list:
        try:
            ast.parse(statement)
        except SyntaxError as exc:
            fail(f"--assert {statement!r} is not a Python statement ({exc.msg})")
    if repo is not None:
        if not test_cmd:
            fail("--repo needs --test-cmd (the command that checks the work, e.g. 'pytest -x')")
        from agent.workspace.repo import refuse_unfinished_operation

        # before the model is loaded: mid-merge or mid-rebase, there is nothing to do
        refuse_unfinished_operation(repo)
        the_task = Task(
            text=task,
            kind=TaskKind.WORKSPACE,
            workdir=str(repo.resolve()),
            test_cmd=test_cmd,
            files=list(files or []),
        )
    else:
        if test_cmd or files:
            fail("--test-cmd and --file apply to workspace tasks; add --repo PATH")
        the_task = Task(
            text=task,
            tests=tests_list,
            test_setup=setup,
            test_file=test_file,
            entry_point=entry_point,
            suite="cli",
        )
    check_sessions_dir(cfg)  # before the model loads: a session that cannot be logged is lost
    try:
        backend = make_backend(cfg)
    except BackendError as exc:
        fail(str(exc), code=3)
    try:
        session = AgentSession(the_task, backend, cfg, purpose="solve")
    except (ValueError, OSError, RuntimeError) as exc:  # e.g. WorkspaceError: not a repo
        fail(str(exc))
    notice = session.env.notice
    if notice:
        typer.secho(str(notice), fg=typer.colors.YELLOW, err=True)
    stream_tokens = sys.stderr.isatty() and not as_json
    finished: EpisodeFinished | None = None
    committed: Committed | None = None
    refused: str | None = None  # why --accept did not commit
    errors: list[str] = []
    try:
        for event in session.start():
            if isinstance(event, TokenDelta):
                if stream_tokens:
                    sys.stderr.write(event.text)
                    sys.stderr.flush()
                continue
            if isinstance(event, ErrorRaised):
                errors.append(event.message)
            if not as_json:
                _progress(event)
            if isinstance(event, EpisodeFinished):
                finished = event
        if accept and finished is not None and finished.outcome == "passed":
            for event in session.accept():
                if isinstance(event, Committed):
                    committed = event
                if isinstance(event, ErrorRaised):
                    errors.append(event.message)
                    refused = event.message
                if not as_json:
                    _progress(event)
    except KeyboardInterrupt:
        session.cancel()
        raise
    finally:
        session.close()
    assert finished is not None
    if as_json:
        payload = {
            "outcome": finished.outcome,
            "session_id": session.session_id,
            "log_path": str(session.log_path),
            "turns": finished.turns,
            "best_turn": finished.best_turn,
            "best_passed": finished.best_passed,
            "n_tests": finished.n_tests,
            "final_code": finished.final_code,
            "completion_tokens": finished.completion_tokens,
            "duration_s": round(finished.duration_s, 3),
            "model": backend.identity.key,
            "policy": cfg.policy,
            "committed": committed.model_dump(include={"sha", "files", "message"})
            if committed
            else None,
            "errors": errors,
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        if finished.final_code:
            typer.echo(_final_code(session.env, finished.final_code, finished.best_turn))
        verdict = (
            "ran cleanly"
            if finished.outcome == "passed" and not finished.n_tests
            else f"tests: {finished.best_passed}/{finished.n_tests}"
        )
        typer.echo(
            f"outcome: {finished.outcome}  {verdict}  "
            f"turns: {finished.turns}  policy: {cfg.policy}  time: {finished.duration_s:.1f}s\n"
            f"session: {session.session_id}\nlog: {session.log_path}"
        )
        for message in errors:
            if message != refused:
                typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    if refused is not None:
        typer.secho(
            f"not committed: {refused}\nThe proposal is kept in the session log: once that "
            f"is sorted out, commit it with `fixloop accept {session.session_id}`.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(4)
    raise typer.Exit(EXIT[finished.outcome])


def _final_code(env: object, code: str, turn: int | None) -> str:
    """The final attempt: a workspace's as its diff against the user's tree, else the code."""
    from agent.workspace import WorkspaceEnv

    if isinstance(env, WorkspaceEnv):
        from agent.workspace.edits import tree_diff

        try:
            diff = tree_diff(code, env.base_text)
        except ValueError:  # a rendering that no longer applies: show it as it is
            diff = ""
        if diff:
            return f"\n--- change to your tree (turn {turn}) ---\n{diff.rstrip()}"
    return f"\n--- final code (turn {turn}) ---\n{code}"


def _progress(event: object) -> None:
    """One short line per loop step on stderr, so a terminal shows where the episode is."""
    from agent.events import (
        CodeProposed,
        Committed,
        ContextTrimmed,
        ExecFinished,
        FormatError,
        ModelReplied,
        TurnStarted,
    )

    line: str | None = None
    if isinstance(event, TurnStarted):
        line = f"\n== turn {event.turn} =="
    elif isinstance(event, ModelReplied):
        line = f"\n[{event.completion_tokens} tokens, {event.tokens_per_s:.1f} tok/s]"
    elif isinstance(event, CodeProposed) and event.duplicate_of is not None:
        line = f"[same program as turn {event.duplicate_of}: asking for a different approach]"
    elif isinstance(event, FormatError):
        line = f"[format error: {event.message}]"
    elif isinstance(event, ExecFinished):
        r = event.result
        label = "hidden tests" if event.hidden else "tests"
        if r.passed and not r.tests:
            line = f"[ran cleanly in {r.duration_s:.2f}s]"
        else:
            line = f"[{label}: {r.status} {r.n_passed}/{r.n_tests} in {r.duration_s:.2f}s]"
    elif isinstance(event, ContextTrimmed):
        line = f"[context: dropped {event.dropped_messages} messages to fit {event.n_ctx} tokens]"
    elif isinstance(event, Committed):
        line = f"[committed {event.sha[:10]}: {event.message}]"
    if line is not None:
        typer.echo(line, err=True)
