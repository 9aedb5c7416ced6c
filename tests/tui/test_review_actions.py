"""Edit, retry, reject and the prompt's history, through keys, with the real sandbox."""

from __future__ import annotations

from textual.widgets import TextArea

from agent.events import EpisodeFinished, UserEdited, UserRejected
from agent.session_log import read_session
from tests.tui.conftest import (
    BAD_REPLY,
    GOOD_REPLY,
    TASK,
    TESTS,
    paste,
    scripted_app,
    type_text,
    wait_until,
)
from tui.screens.edit import EditScreen
from tui.widgets.diff_view import DiffView
from tui.widgets.exec_result import ExecResultView

TASK_TEXT = TASK + "\n" + "\n".join(TESTS)


async def _first_cycle(pilot, chat) -> None:
    await wait_until(pilot, lambda: chat.model_ready, what="the model to load")
    await paste(pilot, TASK_TEXT)
    assert chat.prompt.text == TASK_TEXT
    await pilot.press("enter")
    await wait_until(pilot, lambda: chat.transcript.outcome is not None and not chat.busy)


async def test_edit_reruns_the_code_and_logs_it(settings) -> None:
    app, _ = scripted_app(settings, [BAD_REPLY])
    async with app.run_test(size=(100, 40)) as pilot:
        chat = app.screen
        await _first_cycle(pilot, chat)
        await pilot.press("e")
        editor_screen = app.screen
        assert isinstance(editor_screen, EditScreen)
        editor = editor_screen.query_one("#code", TextArea)
        assert editor.language == "python" and "return a - b" in editor.text
        assert app.focused is editor
        # Fix the operator by hand: select the "-" and type "+".
        row = editor.text.splitlines().index("    return a - b")
        editor.select_line(row)
        await paste(pilot, "    return a + b")
        await pilot.press("ctrl+s")
        assert app.screen is chat
        await wait_until(pilot, lambda: not chat.busy, what="the edit to run")
        result = chat.transcript.query(ExecResultView).last()
        assert result.result.passed and result.result.n_passed == 2
        diff = chat.transcript.query(DiffView).last()
        assert "+    return a + b" in diff.diff and "-    return a - b" in diff.diff
        assert chat.status.state == "edit passed"
        await pilot.press("a")
        await wait_until(pilot, lambda: chat.session is None)

    record = read_session(chat.last_log_path)
    edited = record.of_type(UserEdited)
    assert len(edited) == 1 and "return a + b" in edited[0].edited
    assert edited[0].result is not None and edited[0].result.passed
    assert record.events[-1].type == "user_accepted" and record.events[-1].edited


async def test_edit_cancel_changes_nothing(settings) -> None:
    app, _ = scripted_app(settings, [BAD_REPLY])
    async with app.run_test(size=(80, 24)) as pilot:
        chat = app.screen
        await _first_cycle(pilot, chat)
        await pilot.press("e")
        assert isinstance(app.screen, EditScreen)
        await pilot.press("escape")
        assert app.screen is chat and not chat.busy
    assert not read_session(chat.last_log_path).of_type(UserEdited)


async def test_retry_then_reject(settings) -> None:
    app, backend = scripted_app(settings, [BAD_REPLY, GOOD_REPLY])
    async with app.run_test(size=(80, 24)) as pilot:
        chat = app.screen
        await _first_cycle(pilot, chat)
        await pilot.press("t")
        await wait_until(pilot, lambda: 2 in chat.transcript.attempts and not chat.busy)
        assert chat.transcript.outcome == "passed"
        assert len(backend.calls) == 2
        assert backend.calls[1].params.temperature > 0  # a retry is a new, hotter draw
        await pilot.press("r")
        await wait_until(pilot, lambda: chat.session is None)
        assert chat.status.state == "rejected"
        # Nothing is left to review: the review keys are disabled.
        assert chat.check_action("accept", ()) is None

    record = read_session(chat.last_log_path)
    assert [f.outcome for f in record.of_type(EpisodeFinished)] == ["failed", "passed"]
    assert len(record.of_type(UserRejected)) == 1


async def test_prompt_history_and_newlines(settings) -> None:
    app, _ = scripted_app(settings, [BAD_REPLY, BAD_REPLY])
    async with app.run_test(size=(80, 24)) as pilot:
        chat = app.screen
        await _first_cycle(pilot, chat)
        prompt = chat.prompt
        await pilot.press("i")
        assert app.focused is prompt
        await type_text(pilot, "draft")
        await pilot.press("up")
        assert prompt.text == TASK_TEXT  # the last sent prompt
        await pilot.press("down")
        assert prompt.text == "draft"  # back to what was being typed
        await pilot.press("shift+enter")
        await type_text(pilot, "second line")
        assert prompt.text == "draft\nsecond line"
