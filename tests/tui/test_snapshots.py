"""Snapshot tests (pytest-textual-snapshot), cursor blink off, pinned times and ids.

Update after an intended change of the look: `pytest tests/tui/test_snapshots.py
--snapshot-update`, then review the SVGs under __snapshots__/.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.pilot import Pilot

from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from tests.tui.conftest import scripted_app, wait_until
from tests.tui.fixture_log import write_pinned_session
from tui.app import FixloopApp


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.fixture
def pinned(settings: Settings) -> tuple[Settings, Path]:
    return settings, write_pinned_session(settings)


def test_chat_welcome_80x24(snap_compare, settings: Settings) -> None:
    backend = ScriptedBackend([])
    app = FixloopApp(
        settings, backend_factory=lambda _s: backend, blink=False, cwd=Path("/srv/project")
    )

    async def ready(pilot: Pilot) -> None:
        await wait_until(pilot, lambda: app.screen.model_ready)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


def _replay_app(settings: Settings, path: Path, theme: str) -> FixloopApp:
    app = FixloopApp(settings.model_copy(update={"theme": theme}), replay=path, blink=False)
    return app


def test_replay_dark_80x24(snap_compare, pinned) -> None:
    settings, path = pinned
    app = _replay_app(settings, path, "textual-dark")

    async def replayed(pilot: Pilot) -> None:
        await wait_until(pilot, lambda: app.screen.query_one("#transcript").outcome)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=replayed)


def test_replay_light_120x40(snap_compare, pinned) -> None:
    settings, path = pinned
    app = _replay_app(settings, path, "textual-light")

    async def replayed(pilot: Pilot) -> None:
        await wait_until(pilot, lambda: app.screen.query_one("#transcript").outcome)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(120, 40), run_before=replayed)


def test_session_browser_80x24(snap_compare, pinned) -> None:
    settings, _ = pinned
    app, _ = scripted_app(settings, [])

    async def browse(pilot: Pilot) -> None:
        await wait_until(pilot, lambda: app.screen.model_ready)
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: app.screen.query_one("#sessions").row_count == 1)

    assert snap_compare(app, terminal_size=(80, 24), run_before=browse)
