"""A whole episode driven through the real UI with the scripted backend and the real sandbox."""

from __future__ import annotations

import pytest

from agent.events import (
    EpisodeFinished,
    ExecFinished,
    ModelReplied,
    RepairRequested,
    UserAccepted,
    UserFeedback,
)
from agent.session_log import read_session
from tests.tui.conftest import (
    BAD_REPLY,
    GOOD_REPLY,
    TESTS,
    GatedBackend,
    paste,
    plain,
    scripted_app,
    type_text,
    wait_until,
)
from tui.app import FixloopApp
from tui.screens.chat import ChatScreen
from tui.widgets.diff_view import DiffView
from tui.widgets.exec_result import ExecResultView
from tui.widgets.transcript import EpisodeSummary, Notice, UserMessage


async def test_type_task_stream_fail_feedback_repair_accept(settings) -> None:
    half = len(BAD_REPLY) // 2
    backend = GatedBackend([BAD_REPLY, GOOD_REPLY], gate_after=half, delay_s=0.002)
    app = FixloopApp(settings, backend_factory=lambda _s: backend, blink=False)
    async with app.run_test(size=(100, 40)) as pilot:
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        await wait_until(pilot, lambda: chat.model_ready, what="the model to load")
        assert app.focused is chat.prompt

        # Type the task (ctrl+j adds a line), then paste its two assert lines.
        await type_text(pilot, "Write add.\n")
        await paste(pilot, "\n".join(TESTS))
        assert chat.prompt.text == "Write add.\n" + "\n".join(TESTS)
        await pilot.press("enter")
        assert chat.prompt.text == ""

        # Tokens stream into attempt 1's Markdown through a MarkdownStream: half the reply
        # is on screen while the model is still generating.
        await wait_until(pilot, lambda: 1 in chat.transcript.attempts, what="attempt 1")
        attempt = chat.transcript.attempts[1]
        await wait_until(
            pilot, lambda: len(attempt.reply.source) >= half, what="half the reply shown"
        )
        assert attempt.stream is not None and chat.busy
        assert BAD_REPLY.startswith(attempt.reply.source)
        assert len(attempt.reply.source) < len(BAD_REPLY)
        assert chat.status.state == "generating"
        backend.gate.set()
        await wait_until(pilot, lambda: not chat.busy, what="the first cycle to end")
        assert attempt.reply.source == BAD_REPLY
        assert attempt.stream is None

        # The attempt failed: an expanded result with expected and actual per test.
        failed = attempt.query(ExecResultView).first()
        assert not failed.result.passed and not failed.collapsed
        assert failed.has_class("-failed")
        body = plain(failed.query_one(".exec-body"))
        assert "assert add(1, 2) == 3" in body
        assert "expected 3" in body and "actual   -1" in body
        assert plain(chat.query_one(EpisodeSummary)).startswith("✗ tests still failing")
        assert chat.status.attempt == 1 and chat.status.max_attempts == 1
        assert chat.status.state == "failed · review"
        assert app.focused is chat.transcript  # review keys work straight away

        # Feedback: `f` switches the prompt to feedback mode; Enter sends the correction.
        await pilot.press("f")
        assert chat.prompt.mode == "feedback" and app.focused is chat.prompt
        await type_text(pilot, "It must add ")
        await paste(pilot, "the numbers, not subtract them.")
        await pilot.press("enter")
        await wait_until(pilot, lambda: 2 in chat.transcript.attempts, what="attempt 2")
        await wait_until(pilot, lambda: not chat.busy, what="the repair to end")
        assert chat.prompt.mode == "task"
        feedback = chat.query(UserMessage).filter(".feedback").first()
        assert "must add the numbers" in plain(feedback)
        passed = chat.transcript.attempts[2].query(ExecResultView).first()
        assert passed.result.passed and passed.result.n_passed == 2
        assert chat.status.state == "passed · review"
        assert "must add the numbers" in backend.calls[1].messages[-1].content

        # Accept.
        await pilot.press("a")
        await wait_until(pilot, lambda: chat.session is None and not chat.busy, what="accept")
        assert chat.status.state == "accepted"
        assert app.focused is chat.prompt

    record = read_session(chat.last_log_path)
    types = [e.type for e in record.events]
    assert types.count("turn_started") == 2
    assert record.header.task.tests == TESTS
    replies = record.of_type(ModelReplied)
    assert [r.text for r in replies] == [BAD_REPLY, GOOD_REPLY]
    execs = record.of_type(ExecFinished)
    assert [e.result.status for e in execs] == ["failed", "passed"]
    fb = record.of_type(UserFeedback)
    assert fb and fb[0].text == "It must add the numbers, not subtract them."
    assert "return a - b" in fb[0].code
    assert any(r.reason == "user" for r in record.of_type(RepairRequested))
    finished = record.of_type(EpisodeFinished)
    assert [f.outcome for f in finished] == ["failed", "passed"]
    accepted = record.of_type(UserAccepted)
    assert len(accepted) == 1 and "return a + b" in accepted[0].code
    assert types[-1] == "user_accepted"
    assert "token_delta" not in types


async def test_brackets_in_task_and_errors_are_shown_verbatim(settings) -> None:
    task = "Return [b]x[/b] unchanged [/oops] as a list [1, 2]."
    app, _ = scripted_app(settings, [])  # no reply left: the backend error is shown too
    async with app.run_test(size=(80, 24)) as pilot:
        chat = app.screen
        await wait_until(pilot, lambda: chat.model_ready)
        await paste(pilot, task)
        await pilot.press("enter")
        await wait_until(pilot, lambda: chat.transcript.outcome is not None and not chat.busy)
        assert plain(chat.query(UserMessage).first()) == task
        assert chat.transcript.outcome == "error"
        notes = " ".join(plain(n) for n in chat.transcript.query(Notice))
        assert "no reply left" in notes


@pytest.mark.parametrize(
    ("policy", "says", "never"),
    [
        # resample (the default) draws again from the task after a failure and after a
        # repeat alike: nothing is repaired, and the transcript says so.
        ("resample", ["↻ starting over from the task"] * 2, "repairing"),
        (
            "greedy",
            ["↻ repairing from execution feedback", "↻ repairing from the repeated failure"],
            "starting over",
        ),
    ],
)
async def test_duplicate_attempt_is_noted_and_the_repair_diffed(
    settings, policy: str, says: list[str], never: str
) -> None:
    settings = settings.model_copy(update={"max_turns": 2, "policy": policy})
    app, _ = scripted_app(settings, [BAD_REPLY, BAD_REPLY, GOOD_REPLY])
    async with app.run_test(size=(100, 40)) as pilot:
        chat = app.screen
        await wait_until(pilot, lambda: chat.model_ready)
        await paste(pilot, "Write add.\n" + "\n".join(TESTS))
        await pilot.press("enter")
        await wait_until(pilot, lambda: chat.transcript.outcome is not None and not chat.busy)
        transcript = chat.transcript
        assert transcript.outcome == "passed" and set(transcript.attempts) == {1, 2, 3}
        assert not transcript.attempts[2].query(ExecResultView)  # a duplicate is not run
        notes = [plain(n) for n in transcript.query(Notice)]
        assert "same code as attempt 1; asking for something new" in notes
        diffs = transcript.query(DiffView)
        assert len(diffs) == 1 and "attempt 1 → attempt 3" in diffs.first().title
        assert chat.status.attempt == 2  # the repeat did not use up the budget
        assert "(2 of 2 this round)" in plain(transcript.attempts[3].header)
        assert [n for n in notes if n.startswith("↻")] == says
        assert not [n for n in notes if never in n]
