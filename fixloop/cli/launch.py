"""What plain `fixloop` does: the TUI when it is installed and a terminal is attached."""

from __future__ import annotations

import importlib.util
import sys

import typer

from fixloop.cli.common import check_sessions_dir, settings


def _textual_installed() -> bool:
    return importlib.util.find_spec("textual") is not None


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def launch_default() -> None:
    """The TUI in the current directory; without a terminal, one headless answer."""
    cfg = settings()
    if _interactive() and _textual_installed():
        check_sessions_dir(cfg)  # the TUI logs every session there
        from tui.app import run_app

        run_app(cfg)
        return
    # Headless fallback: one answer from the model, so `make run` proves the model works.
    from agent.backends import make_backend
    from agent.events import ChatMessage, SamplingParams

    typer.echo(f"fixloop: no interactive terminal; one headless answer from {cfg.model}.")
    backend = make_backend(cfg)
    messages = [ChatMessage(role="user", content="Write a Python function that reverses a string.")]
    for chunk in backend.stream_chat(messages, SamplingParams(max_tokens=200)):
        typer.echo(chunk.text, nl=False)
    typer.echo()
