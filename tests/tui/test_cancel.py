"""Esc / Ctrl+C stop the model mid-stream, keep the log, and give control back fast."""

from __future__ import annotations

import time

import pytest

from agent.events import EpisodeFinished, ModelReplied
from agent.session_log import read_session
from tests.tui.conftest import paste, scripted_app, wait_until

LONG_REPLY = "Thinking about it step by step. " * 200 + "\n```python\ndef f():\n    pass\n```\n"


@pytest.mark.parametrize("key", ["escape", "ctrl+c"])
async def test_cancel_during_generation_gives_control_back(settings, key: str) -> None:
    app, _ = scripted_app(settings, [LONG_REPLY], delay_s=0.03)
    async with app.run_test(size=(80, 24)) as pilot:
        chat = app.screen
        await wait_until(pilot, lambda: chat.model_ready, what="the model to load")
        await paste(pilot, "Write f.")
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: 1 in chat.transcript.attempts and chat.transcript.attempts[1].streamed,
            what="the first tokens",
        )
        assert chat.busy and chat.status.state == "generating"

        # The prompt stays usable while the model generates.
        await pilot.press("n")  # a key press is handled while tokens stream in
        await paste(pilot, "ext")
        assert chat.prompt.text == "next"
        assert chat.busy, "generation ended on its own: the reply is too short for this test"

        pressed = time.monotonic()
        await pilot.press(key)
        await wait_until(pilot, lambda: not chat.busy, timeout=5, what="control back")
        wall = time.monotonic() - pressed
        assert chat.last_cycle_s is not None and chat.last_cycle_s < 0.5, chat.last_cycle_s
        assert wall < 2.0, wall  # includes the pilot's own idle waits
        assert chat.status.state == "cancelled · review"
        assert app.focused is chat.prompt and chat.prompt.text == "next"
        attempt = chat.transcript.attempts[1]
        assert 0 < len(attempt.reply.source) < len(LONG_REPLY)
        assert attempt.stream is None  # the Markdown stream was closed

    record = read_session(chat.last_log_path)
    finished = record.of_type(EpisodeFinished)
    assert [f.outcome for f in finished] == ["cancelled"]
    replied = record.of_type(ModelReplied)
    assert all(len(r.text) < len(LONG_REPLY) for r in replied)


async def test_escape_when_idle_does_not_quit(settings) -> None:
    app, _ = scripted_app(settings, [])
    async with app.run_test(size=(80, 24)) as pilot:
        chat = app.screen
        await wait_until(pilot, lambda: chat.model_ready)
        await pilot.press("escape", "ctrl+c")
        assert app.is_running and app.screen is chat
