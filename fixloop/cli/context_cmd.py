"""`fixloop context`: print what the model would see for a workspace task, without asking it.

It runs the test command once in the sandbox on a scratch copy (as `fixloop solve --repo`
does), chooses the code that matters to the failure within the model's token budget, and
prints the system prompt and the first user message; a summary (tokens, files shown whole
and in part) goes to stderr. Nothing is written to the repository and no model is asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fixloop.cli.common import AdapterOpt, BaseUrlOpt, ModelOpt, NCtxOpt, fail, settings

DEFAULT_TASK = "Make the failing test pass."


def context(
    task: Annotated[
        str, typer.Argument(help="The task, in words (or @FILE), as you would give it to solve.")
    ] = DEFAULT_TASK,
    repo: Annotated[
        Path, typer.Option("--repo", help="The repository (default: the current directory).")
    ] = Path("."),
    test_cmd: Annotated[
        str | None,
        typer.Option("--test-cmd", help="The check, e.g. 'python -m pytest -x -q tests/x.py'."),
    ] = None,
    files: Annotated[
        list[str] | None, typer.Option("--file", help="A file the task is about (repeatable).")
    ] = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    adapter: AdapterOpt = None,
    n_ctx: NCtxOpt = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", help="Tokens kept for the reply.")
    ] = None,
    estimate: Annotated[
        bool,
        typer.Option(
            "--estimate",
            help="Do not load the model: estimate tokens (about 3 characters each) for a "
            "window of --n-ctx.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the messages, the selection and the counts.")
    ] = False,
) -> None:
    """Print what the model would see for a workspace task (runs the test command once)."""
    from agent.events import ChatMessage, Task, TaskKind
    from agent.workspace import WorkspaceEnv
    from agent.workspace.context import estimate_tokens
    from agent.workspace.env import SYSTEM, prompt_budget
    from agent.workspace.repo import refuse_unfinished_operation
    from fixloop.cli.common import read_input

    if not test_cmd:
        fail("--test-cmd is needed: the command whose failure the context is chosen from")
    if task.startswith("@"):
        task = read_input(Path(task[1:]), "the task file")
    cfg = settings(
        model=model, base_url=base_url, adapter=adapter, n_ctx=n_ctx, max_tokens=max_tokens
    )
    refuse_unfinished_operation(repo)
    if estimate:
        system_tokens = estimate_tokens(SYSTEM)
        env = WorkspaceEnv(
            repo,
            test_cmd,
            files,
            prompt_tokens=prompt_budget(cfg.n_ctx, cfg.max_tokens, system_tokens),
        )
        counted_by, total = "estimate", None
    else:
        from agent.backends import BackendError, make_backend

        try:
            backend = make_backend(cfg)
        except BackendError as exc:
            fail(f"{exc} (or pass --estimate to count without the model)", code=3)
        env = WorkspaceEnv.for_backend(
            repo, test_cmd, files, backend=backend, reply_tokens=cfg.max_tokens
        )
        counted_by = backend.identity.key
        total = backend.count_tokens
    the_task = Task(
        text=task,
        kind=TaskKind.WORKSPACE,
        workdir=str(repo.resolve()),
        test_cmd=test_cmd,
        files=list(files or []),
    )
    try:
        user = env.prompt(the_task)
    finally:
        env.close()
    messages = [
        ChatMessage(role="system", content=env.system_prompt),
        ChatMessage(role="user", content=user),
    ]
    tokens = (
        total(messages) if total is not None else sum(estimate_tokens(m.content) for m in messages)
    )
    ctx = env.context
    assert ctx is not None and env.baseline is not None
    baseline = env.baseline
    verdict = (
        "passes"
        if baseline.passed
        else f"{baseline.status.value}, {baseline.n_tests - baseline.n_passed} of "
        f"{baseline.n_tests} tests failing"
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "messages": [m.model_dump() for m in messages],
                    "prompt_tokens": tokens,
                    "first_message_budget": env.prompt_tokens,
                    "context_tokens": ctx.tokens,
                    "context_budget": ctx.budget,
                    "counted_by": counted_by,
                    "test_command": verdict,
                    "files": [
                        {
                            "path": v.path,
                            "whole": v.whole,
                            "reason": v.reason,
                            "lines": [[p.start, p.end] for p in v.pieces],
                        }
                        for v in ctx.views
                    ],
                },
                indent=2,
            )
        )
        return
    for m in messages:
        typer.echo(f"===== {m.role} =====\n{m.content}\n")
    parts = [
        f"prompt: {tokens} tokens ({counted_by}); code shown: {ctx.tokens} of {ctx.budget}",
        f"test command: {verdict}",
    ]
    if ctx.whole:
        parts.append("whole: " + ", ".join(ctx.whole))
    if ctx.partial:
        parts.append(
            "in part: "
            + ", ".join(
                f"{v.path} (lines "
                + ", ".join(f"{p.start}-{p.end}" for p in sorted(v.pieces, key=lambda p: p.start))
                + ")"
                if v.pieces
                else f"{v.path} (outline)"
                for v in ctx.views
                if not v.whole
            )
        )
    typer.secho("\n".join(parts), fg=typer.colors.CYAN, err=True)
