"""`fixloop replay ID` from the command line (the TUI itself is covered by the other tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.config import Settings
from fixloop.cli import app
from tests.tui.fixture_log import SESSION_ID, write_pinned_session


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("FIXLOOP_SESSIONS_DIR", str(settings.sessions_dir))
    monkeypatch.setenv("FIXLOOP_CONFIG_DIR", str(settings.data_dir / "config"))
    return settings


def test_replay_unknown_session_is_a_clear_error(env: Settings) -> None:
    result = CliRunner().invoke(app, ["replay", "nosuchsession"])
    assert result.exit_code == 2
    assert "no session 'nosuchsession'" in result.output
    assert "fixloop sessions list" in result.output


def test_replay_without_a_terminal_points_to_sessions_show(env: Settings) -> None:
    write_pinned_session(env)
    result = CliRunner().invoke(app, ["replay", SESSION_ID[:15]])
    assert result.exit_code == 2
    assert "needs an interactive terminal" in result.output
    assert f"fixloop sessions show {SESSION_ID[:15]}" in result.output


def test_replay_of_a_broken_log_names_the_file(env: Settings) -> None:
    day = Path(env.sessions_dir) / "2026-01-01"
    day.mkdir(parents=True)
    (day / "20260101-000000-bad000.jsonl").write_text("not json\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["replay", "20260101-000000-bad000"])
    assert result.exit_code == 2
    assert "20260101-000000-bad000.jsonl:1" in result.output
