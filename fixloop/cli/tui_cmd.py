"""`fixloop replay ID`: open a logged session read-only in the TUI."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from agent.session_log import find_session, read_session
from fixloop.cli.common import fail, settings


def replay(
    ident: Annotated[
        str, typer.Argument(help="Session id, a unique prefix of one, or a path to a .jsonl log.")
    ],
) -> None:
    """Replay a logged session in the TUI, through the same widgets as a live one."""
    cfg = settings()
    path = find_session(cfg.sessions_dir, ident)
    read_session(path)  # a broken log is reported here, not inside the TUI
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        fail(
            f"replay needs an interactive terminal; `fixloop sessions show {ident}` prints "
            "the session as text."
        )
    from tui.app import run_app

    run_app(cfg, replay=path)
