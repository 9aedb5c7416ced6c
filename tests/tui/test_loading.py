"""Model loading: a visible loading state, tasks typed meanwhile wait, failures are explained."""

from __future__ import annotations

import threading

from agent.backends.base import BackendError
from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from tests.tui.conftest import GOOD_REPLY, TESTS, paste, plain, wait_until
from tui.app import FixloopApp
from tui.widgets.transcript import Notice


async def test_loading_state_and_queued_task(settings: Settings) -> None:
    release = threading.Event()

    def slow_factory(_settings: Settings) -> ScriptedBackend:
        release.wait(10)  # the "model" loads until the test lets it finish
        return ScriptedBackend([GOOD_REPLY])

    app = FixloopApp(settings, backend_factory=slow_factory, blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        chat = app.screen
        loading = chat.query_one("#loading")
        assert loading.display and not chat.model_ready
        assert chat.status.state == "loading model"
        assert "loading scripted" in plain(chat.query_one("#loading-text"))
        # The UI stays usable: a task typed now starts once the model is ready.
        await paste(pilot, "Add two numbers.\n" + "\n".join(TESTS))
        await pilot.press("enter")
        assert chat.pending_task is not None and chat.session is None
        release.set()
        await wait_until(pilot, lambda: chat.transcript.outcome == "passed" and not chat.busy)
        assert not loading.display and chat.pending_task is None


async def test_model_that_fails_to_load_says_why(settings: Settings) -> None:
    def broken(_settings: Settings) -> ScriptedBackend:
        raise BackendError("model 'x' is not installed. Run `fixloop models pull x`.")

    app = FixloopApp(settings, backend_factory=broken, blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        chat = app.screen
        await wait_until(pilot, lambda: chat.status.state == "model failed to load")
        note = plain(chat.transcript.query(Notice).last())
        assert "fixloop models pull x" in note
        assert not chat.query_one("#loading").display
