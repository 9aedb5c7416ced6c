"""What plain `fixloop` does: the TUI when it is installed and a terminal is attached."""

from __future__ import annotations

import sys

import typer

from fixloop.cli.common import fail, settings


def launch_default() -> None:
    cfg = settings()
    try:
        from tui.app import run_app
    except ImportError:
        run_app = None
    if run_app is not None and sys.stdin.isatty() and sys.stdout.isatty():
        run_app(cfg)
        return
    # Headless fallback: one answer from the model, so `make run` proves the model works.
    from agent.backends import BackendError, make_backend
    from agent.events import ChatMessage, SamplingParams

    typer.echo(f"fixloop: no interactive terminal; one headless answer from {cfg.model}.")
    try:
        backend = make_backend(cfg)
    except BackendError as exc:
        fail(str(exc))
    messages = [ChatMessage(role="user", content="Write a Python function that reverses a string.")]
    for chunk in backend.stream_chat(messages, SamplingParams(max_tokens=200)):
        typer.echo(chunk.text, nl=False)
    typer.echo()
