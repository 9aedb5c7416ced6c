"""Session browser, read-only replay, model picker, command palette and themes."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable

from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from agent.events import Task
from agent.models import Registry, builtin_models
from agent.session import AgentSession
from tests.tui.conftest import BAD_REPLY, GOOD_REPLY, TESTS, plain, scripted_app, wait_until
from tui.app import FixloopApp
from tui.screens.chat import ChatScreen
from tui.screens.models import ModelPicker
from tui.screens.replay import ReplayScreen
from tui.screens.sessions import SessionBrowser
from tui.widgets.exec_result import ExecResultView
from tui.widgets.transcript import EpisodeSummary, Notice, UserMessage


def log_session(settings: Settings, replies: list[str], text: str, accept: bool) -> Path:
    """A real session (scripted model, real sandbox) logged under settings.sessions_dir."""
    task = Task(text=text, tests=TESTS)
    with AgentSession(task, ScriptedBackend(replies), settings) as session:
        list(session.start())
        if accept:
            list(session.accept())
        return session.log_path


async def test_session_browser_lists_and_replays(settings) -> None:
    settings = settings.model_copy(update={"max_turns": 2})
    first = log_session(settings, [BAD_REPLY, GOOD_REPLY], "Add two numbers.", accept=True)
    times_reply = BAD_REPLY.replace("a - b", "a * b")
    log_session(settings, [BAD_REPLY, times_reply], "Add, second try.", accept=False)
    app, _ = scripted_app(settings, [])
    async with app.run_test(size=(100, 30)) as pilot:
        chat = app.screen
        await pilot.press("ctrl+o")
        browser = app.screen
        assert isinstance(browser, SessionBrowser)
        table = browser.query_one("#sessions", DataTable)
        await wait_until(pilot, lambda: table.row_count == 2, what="two sessions listed")
        rows = [[plain_cell(c) for c in table.get_row_at(i)] for i in range(2)]
        assert rows[0][1:5] == ["failed", "2", "scripted", "Add, second try."]  # newest first
        assert rows[1][1:5] == ["passed", "2", "scripted", "Add two numbers."]
        table.move_cursor(row=1)
        await pilot.press("enter")
        replay = app.screen
        assert isinstance(replay, ReplayScreen) and replay.path == first
        transcript = replay.query_one("#transcript")
        await wait_until(pilot, lambda: transcript.outcome is not None, what="replayed")
        assert plain(transcript.query(UserMessage).first()) == "Add two numbers."
        assert set(transcript.attempts) == {1, 2}
        assert transcript.attempts[1].reply.source == BAD_REPLY
        results = transcript.query(ExecResultView)
        assert [r.result.passed for r in results] == [False, True]
        assert plain(transcript.query(EpisodeSummary).last()).startswith("✓ tests passed")
        assert "accepted attempt 2" in plain(transcript.query(Notice).last())
        assert replay.query_one("#status").attempt == 2
        assert not replay.query("PromptInput")  # read-only: nothing to type into
        await pilot.press("escape")
        assert app.screen is browser
        await pilot.press("escape")
        assert app.screen is chat


def plain_cell(cell: object) -> str:
    return getattr(cell, "plain", str(cell))


async def test_replay_opens_straight_away(settings) -> None:
    path = log_session(settings, [GOOD_REPLY], "Add two numbers.", accept=True)
    app = FixloopApp(settings, replay=path, blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        replay = app.screen
        assert isinstance(replay, ReplayScreen)
        transcript = replay.query_one("#transcript")
        await wait_until(pilot, lambda: transcript.outcome == "passed", what="replayed")
        title = plain(replay.query_one("#replay-title"))
        assert path.stem in title and "passed" in title
        await pilot.press("q")
    assert app.return_code == 0


async def test_model_picker_lists_registry_and_sets_default(settings) -> None:
    app, _ = scripted_app(settings.model_copy(update={"model": "smollm2-135m"}), [])
    async with app.run_test(size=(80, 24)) as pilot:
        chat = app.screen
        await pilot.press("ctrl+l")
        picker = app.screen
        assert isinstance(picker, ModelPicker)
        table = picker.query_one("#models", DataTable)
        names = [str(key.value) for key in table.rows]
        assert names == list(builtin_models())
        row = names.index("smollm2-135m")
        assert table.cursor_row == row
        assert "●" in plain_cell(table.get_row_at(row)[0])  # in use
        table.move_cursor(row=names.index("qwen2.5-coder-0.5b"))
        await pilot.press("d")
        assert Registry(settings.data_dir).active() == "qwen2.5-coder-0.5b"
        assert "★" in plain_cell(table.get_row_at(names.index("qwen2.5-coder-0.5b"))[0])
        await pilot.press("escape")
        assert app.screen is chat
        assert chat.settings.model == "smollm2-135m"  # escape keeps the model
        await pilot.press("ctrl+l")
        picker = app.screen
        picker.query_one("#models", DataTable).move_cursor(row=0)
        await pilot.press("enter")
        assert app.screen is chat
        assert chat.settings.model == "qwen2.5-coder-1.5b"  # reloaded with the picked model
        await wait_until(pilot, lambda: chat.model_ready)


async def test_palette_lists_review_actions_and_theme_toggles(settings) -> None:
    app, _ = scripted_app(settings, [GOOD_REPLY])
    async with app.run_test(size=(80, 24)) as pilot:
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        await wait_until(pilot, lambda: chat.model_ready)
        titles = {c.title for c in app.get_system_commands(chat)}
        assert {"Sessions", "Models", "New task"} <= titles
        assert "Accept" not in titles  # nothing to review yet
        chat.start_task("Add two numbers.\n" + "\n".join(TESTS))
        await wait_until(pilot, lambda: chat.transcript.outcome == "passed" and not chat.busy)
        titles = {c.title for c in app.get_system_commands(chat)}
        assert {"Accept", "Reject", "Edit code", "Feedback", "Retry"} <= titles
        # Focus moves to the transcript on the next tick (single-key actions are not
        # active while the prompt has focus); under load that tick can come late.
        await wait_until(pilot, lambda: app.focused is chat.transcript)
        footer_keys = {b.key for (_, b, enabled, _) in chat.active_bindings.values() if enabled}
        assert {"a", "r", "e", "f", "t"} <= footer_keys
        assert app.current_theme.dark
        await pilot.press("ctrl+t")
        assert not app.current_theme.dark
        await pilot.press("ctrl+t")
        assert app.current_theme.dark
