"""The repair loop's logic, driven by the scripted backend, with real sandbox runs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from agent.context_fit import fit_context
from agent.environment import Environment, FunctionEnv
from agent.events import (
    CodeProposed,
    ContextTrimmed,
    Correction,
    EpisodeFinished,
    ErrorRaised,
    Event,
    ExecFinished,
    FormatError,
    ModelReplied,
    PromptSent,
    RepairRequested,
    SessionStarted,
    Task,
    TokenDelta,
    TurnStarted,
    UserAccepted,
    UserEdited,
    UserFeedback,
    UserRejected,
)
from agent.session import AgentSession, SessionStateError
from agent.session_log import read_session

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"]


def block(code: str) -> str:
    return f"Here is my solution:\n```python\n{code}\n```\n"


WRONG = block("def add(a, b):\n    return a * b")  # passes 1 of 3: add(2, 2) == 4
RIGHT = block("def add(a, b):\n    return a + b")
CRASH = block("def add(a, b):\n    return a + c")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        sessions_dir=tmp_path / "sessions", max_turns=4, exec_timeout=10, policy="greedy"
    )


def session_for(
    replies: list[str],
    settings: Settings,
    *,
    tests: list[str] | None = None,
    hidden: list[str] | None = None,
    delay_s: float = 0.0,
    n_ctx: int = 4096,
    env: Environment | None = None,
) -> tuple[AgentSession, ScriptedBackend]:
    backend = ScriptedBackend(replies, delay_s=delay_s, n_ctx=n_ctx)
    task = Task(
        text="Write a function add(a, b) that returns the sum of a and b.",
        tests=ADD_TESTS if tests is None else tests,
        hidden_tests=hidden or [],
    )
    return AgentSession(task, backend, settings, purpose="solve", env=env), backend


def drain(events: object) -> list[Event]:
    return list(events)  # type: ignore[call-overload]


def kinds(events: list[Event]) -> list[str]:
    return [e.type for e in events if not isinstance(e, TokenDelta)]


def finished(events: list[Event]) -> EpisodeFinished:
    last = events[-1]
    assert isinstance(last, EpisodeFinished)
    return last


def test_first_try_pass_event_order_and_log(settings: Settings) -> None:
    session, backend = session_for([RIGHT], settings)
    events = drain(session.start())
    session.close()
    assert kinds(events) == [
        "session_started",
        "turn_started",
        "prompt_sent",
        "model_replied",
        "code_proposed",
        "exec_finished",
        "episode_finished",
    ]
    assert any(isinstance(e, TokenDelta) for e in events)
    done = finished(events)
    assert (done.outcome, done.turns, done.best_turn, done.best_passed, done.n_tests) == (
        "passed",
        1,
        1,
        3,
        3,
    )
    assert done.final_code == "def add(a, b):\n    return a + b\n"
    prompt = next(e for e in events if isinstance(e, PromptSent))
    assert prompt.messages[0].role == "system"
    assert "assert add(1, 2) == 3" in prompt.messages[1].content
    assert prompt.messages == backend.calls[0].messages  # logged exactly as sent
    record = read_session(session.log_path)
    assert record.header.session_id == session.session_id
    assert record.header.model.backend == "scripted"
    assert "api_key" not in record.header.config
    assert [e.type for e in record.events] == kinds(events)[1:]
    assert [e.seq for e in record.events] == list(range(1, len(record.events) + 1))
    reply = record.of_type(ModelReplied)[0]
    assert reply.text.rstrip("\n") == RIGHT.rstrip("\n") and reply.finish_reason == "code_complete"
    assert session.log_path.parent.parent == settings.sessions_dir


def test_generation_stops_once_the_code_block_is_complete(settings: Settings) -> None:
    chatty = RIGHT + "This function adds a and b. " * 30
    session, _ = session_for([chatty], settings)
    reply = next(e for e in session.start() if isinstance(e, ModelReplied))
    assert reply.finish_reason == "code_complete"
    assert chatty.startswith(reply.text) and len(reply.text) < len(RIGHT) + 4
    session2, _ = session_for([chatty], settings, env=FunctionEnv(stop_after_code=False))
    whole = next(e for e in session2.start() if isinstance(e, ModelReplied))
    assert whole.text == chatty and whole.finish_reason == "stop"


def test_each_event_is_on_disk_before_it_is_yielded(settings: Settings) -> None:
    session, _ = session_for([WRONG, RIGHT], settings)
    for event in session.start():
        if isinstance(event, TokenDelta):
            continue
        lines = session.log_path.read_text().splitlines()
        assert f'"seq":{event.seq},' in lines[-1]
    session.close()


def test_repairs_from_feedback_showing_expected_and_actual(settings: Settings) -> None:
    session, backend = session_for([WRONG, RIGHT], settings)
    events = drain(session.start())
    repair = next(e for e in events if isinstance(e, RepairRequested))
    assert repair.reason == "exec" and repair.turn == 1
    assert "expected: 3" in repair.feedback and "got:      2" in repair.feedback
    second = backend.calls[1].messages
    assert [m.role for m in second] == ["system", "user", "assistant", "user"]
    assert second[2].content == WRONG and second[3].content == repair.feedback
    done = finished(events)
    assert done.outcome == "passed" and done.best_turn == 2 and done.turns == 2


def test_format_error_gets_a_format_feedback_turn(settings: Settings) -> None:
    session, backend = session_for(["Sure! Adding is easy.", RIGHT], settings)
    events = drain(session.start())
    error = next(e for e in events if isinstance(e, FormatError))
    repair = next(e for e in events if isinstance(e, RepairRequested))
    assert error.turn == 1 and repair.reason == "format"
    assert "code block" in backend.calls[1].messages[-1].content
    assert finished(events).outcome == "passed"


def test_duplicate_is_resampled_hot_not_rerun_and_not_counted(settings: Settings) -> None:
    same_again = block("# try again\ndef add(a, b):\n    '''Sum.'''\n    return (a * b)")
    settings = settings.model_copy(update={"max_turns": 2})
    session, backend = session_for([WRONG, same_again, RIGHT], settings)
    events = drain(session.start())
    proposed = [e for e in events if isinstance(e, CodeProposed)]
    assert [p.duplicate_of for p in proposed] == [None, 1, None]
    runs = [e for e in events if isinstance(e, ExecFinished)]
    assert [r.turn for r in runs] == [1, 3]  # the duplicate was not run again
    dup = [e for e in events if isinstance(e, RepairRequested) and e.reason == "duplicate"]
    assert len(dup) == 1 and "different approach" in dup[0].feedback
    assert "expected: 3" in dup[0].feedback  # what attempt 1 got wrong
    # The conversation restarts from the task: the repeated program is not shown again.
    third = backend.calls[2].messages
    assert [m.role for m in third] == ["system", "user"]
    assert "assert add(1, 2) == 3" in third[1].content and dup[0].feedback in third[1].content
    assert "a * b" not in third[1].content
    temps = [c.params.temperature for c in backend.calls]
    seeds = [c.params.seed for c in backend.calls]
    assert temps[0] == 0.0 and temps[1] == 0.0 and temps[2] >= 0.8
    assert seeds[2] != seeds[0]
    done = finished(events)
    # Two counted attempts fit a budget of 2 because the duplicate did not count.
    assert done.outcome == "passed" and done.turns == 3 and done.best_turn == 3


def test_duplicates_alone_cannot_loop_forever(settings: Settings) -> None:
    settings = settings.model_copy(update={"max_turns": 2})
    session, backend = session_for([WRONG] * 4, settings)
    events = drain(session.start())
    done = finished(events)
    assert done.outcome == "failed" and done.turns == 4 and len(backend.calls) == 4
    assert [e.duplicate_of for e in events if isinstance(e, CodeProposed)] == [None, 1, 1, 1]
    last = backend.calls[-1].messages  # one note about attempt 1, not one per repeat
    assert [m.role for m in last] == ["system", "user"]
    assert last[1].content.count("different approach") == 1
    temps = [c.params.temperature for c in backend.calls]
    assert temps == sorted(temps) and temps[-1] > temps[1]


def test_best_attempt_is_kept_not_the_last(settings: Settings) -> None:
    settings = settings.model_copy(update={"max_turns": 2})
    session, _ = session_for([WRONG, CRASH], settings)
    events = drain(session.start())
    runs = [e.result for e in events if isinstance(e, ExecFinished)]
    assert [r.n_passed for r in runs] == [1, 0]
    done = finished(events)
    assert done.outcome == "failed"
    assert done.best_turn == 1 and done.best_passed == 1 and "a * b" in (done.final_code or "")
    assert session.proposal is not None and "a * b" in session.proposal.code


def test_turn_budget_is_respected(settings: Settings) -> None:
    wrongs = [block(f"def add(a, b):\n    return a * b + {i} + 1") for i in range(5)]
    settings = settings.model_copy(update={"max_turns": 3})
    session, backend = session_for(wrongs, settings)
    events = drain(session.start())
    assert len(backend.calls) == 3
    assert sum(isinstance(e, TurnStarted) for e in events) == 3
    # No feedback turn after the last attempt: nobody would read it.
    assert [e.turn for e in events if isinstance(e, RepairRequested)] == [1, 2]
    assert finished(events).outcome == "failed"


def test_hidden_tests_score_the_final_code_and_are_never_shown(settings: Settings) -> None:
    hidden = ["assert add(10, 20) == 30", "assert add(3, 4) == 7"]
    session, backend = session_for([WRONG, RIGHT], settings, hidden=hidden)
    events = drain(session.start())
    hidden_runs = [e for e in events if isinstance(e, ExecFinished) and e.hidden]
    assert len(hidden_runs) == 1 and hidden_runs[0].turn == 2 and hidden_runs[0].result.passed
    done = finished(events)
    assert done.hidden_passed is True and done.reward == 1.0
    for call in backend.calls:
        assert all("add(10, 20)" not in m.content for m in call.messages)


def test_hidden_tests_failing_give_negative_reward(settings: Settings) -> None:
    session, _ = session_for(
        [RIGHT], settings, tests=["assert add(1, 1) == 2"], hidden=["assert add(1, 2) == 4"]
    )
    done = finished(drain(session.start()))
    assert done.outcome == "passed" and done.hidden_passed is False and done.reward == -1.0


def test_user_feedback_conditions_on_task_code_and_correction(settings: Settings) -> None:
    typed = block("def add(a: int, b: int) -> int:\n    return a + b")
    session, backend = session_for([RIGHT, typed], settings)
    drain(session.start())
    events = drain(session.feedback("Add type hints to the parameters and the return value."))
    note = events[0]
    assert isinstance(note, UserFeedback)
    assert note.code == "def add(a, b):\n    return a + b\n" and "type hints" in note.text
    user_turn = events[1]
    assert isinstance(user_turn, RepairRequested) and user_turn.reason == "user"
    sent = backend.calls[1].messages
    assert [m.role for m in sent] == ["system", "user", "assistant", "user"]
    assert "assert add(1, 2) == 3" in sent[1].content  # the task
    assert "return a + b" in sent[2].content  # the old code
    assert "type hints" in sent[3].content  # the correction
    done = finished(events)
    assert done.outcome == "passed" and "a: int" in (done.final_code or "")
    record = read_session(session.log_path)
    assert len(record.of_type(EpisodeFinished)) == 2
    assert record.outcome is not None and record.outcome.seq == done.seq


def test_feedback_answered_with_the_same_program_is_a_duplicate(settings: Settings) -> None:
    typed = block("def add(a: int, b: int) -> int:\n    return a + b")
    session, backend = session_for([RIGHT, RIGHT, typed], settings)
    drain(session.start())
    events = drain(session.feedback("Use type hints."))
    assert [e.duplicate_of for e in events if isinstance(e, CodeProposed)] == [1, None]
    dup = next(e for e in events if isinstance(e, RepairRequested) and e.reason == "duplicate")
    assert "Use type hints." in dup.feedback and "unchanged" in dup.feedback
    third = backend.calls[2].messages
    assert [m.role for m in third] == ["system", "user", "assistant", "user"]
    assert "return a + b" in third[2].content and third[3].content.endswith(dup.feedback)
    assert backend.calls[2].params.temperature >= 0.8
    assert finished(events).outcome == "passed"


def test_edit_accept_and_reject_are_logged(settings: Settings) -> None:
    session, _ = session_for([WRONG] * 4, settings)
    drain(session.start())
    fixed = "def add(a, b):\n    return b + a\n"
    events = drain(session.edit(fixed))
    edited = next(e for e in events if isinstance(e, UserEdited))
    assert edited.original.strip().endswith("a * b") and edited.edited == fixed
    assert edited.result is not None and edited.result.passed
    assert not any(isinstance(e, Correction) for e in events)  # the edit is logged once
    accepted = drain(session.accept())
    assert len(accepted) == 1 and isinstance(accepted[0], UserAccepted)
    assert accepted[0].code == fixed and accepted[0].edited
    rejected = drain(session.reject("wrong style"))
    assert isinstance(rejected[0], UserRejected) and rejected[0].reason == "wrong style"
    session.close()
    types = [e.type for e in read_session(session.log_path).events]
    assert types[-3:] == ["user_edited", "user_accepted", "user_rejected"]


def test_accept_before_any_attempt_is_refused(settings: Settings) -> None:
    session, _ = session_for([], settings)
    with pytest.raises(SessionStateError, match="nothing to accept"):
        drain(session.accept())


def test_retry_starts_fresh_and_samples_hot(settings: Settings) -> None:
    other = block("def add(a, b):\n    return sum([a, b])")
    session, backend = session_for([RIGHT, other], settings)
    drain(session.start())
    events = drain(session.retry())
    assert [m.role for m in backend.calls[1].messages] == ["system", "user"]
    assert backend.calls[1].params.temperature >= 0.8
    assert finished(events).outcome == "passed" and "sum" in (finished(events).final_code or "")


def test_cancel_from_another_thread_stops_between_tokens(settings: Settings) -> None:
    long_reply = block("def add(a, b):\n" + "    x = 1\n" * 200 + "    return a + b")
    session, _ = session_for([long_reply], settings, delay_s=0.002)
    events: list[Event] = []
    for event in session.start():
        events.append(event)
        if isinstance(event, TokenDelta) and len(events) == 10:
            threading.Thread(target=session.cancel).start()
    session.close()
    reply = next(e for e in events if isinstance(e, ModelReplied))
    assert reply.finish_reason == "cancelled" and len(reply.text) < len(long_reply)
    done = finished(events)
    assert done.outcome == "cancelled" and done.best_turn is None
    assert not any(isinstance(e, ExecFinished) for e in events)
    assert read_session(session.log_path).outcome == done


def test_cancel_is_cleared_for_the_next_action(settings: Settings) -> None:
    session, _ = session_for([RIGHT], settings)
    session.cancel()  # pressed while idle: must not kill the next run
    assert finished(drain(session.start())).outcome == "passed"


def test_backend_failure_ends_the_episode_with_an_error(settings: Settings) -> None:
    session, _ = session_for([WRONG], settings)  # runs out of replies on turn 2
    events = drain(session.start())
    error = next(e for e in events if isinstance(e, ErrorRaised))
    assert error.where == "model" and "no reply left" in error.message
    done = finished(events)
    assert done.outcome == "error" and done.best_turn == 1


def test_context_is_trimmed_to_fit_a_small_window(settings: Settings) -> None:
    filler = "word " * 40
    replies = [block(f"def add(a, b):\n    # {filler}\n    return a * b + {i}") for i in range(4)]
    replies.append(RIGHT)
    settings = settings.model_copy(update={"max_turns": 5, "max_tokens": 64})
    session, backend = session_for(replies, settings, n_ctx=400)
    events = drain(session.start())
    trims = [e for e in events if isinstance(e, ContextTrimmed)]
    assert trims, "a 400-token window cannot hold five attempts"
    for trim in trims:
        assert trim.tokens_after < trim.tokens_before and trim.n_ctx == 400
    assert not any(isinstance(e, CodeProposed) and e.duplicate_of for e in events)
    for call in backend.calls:
        assert backend.count_tokens(call.messages) + call.params.max_tokens <= 400
        assert call.messages[0].role == "system" and "add(a, b)" in call.messages[1].content
    last = backend.calls[-1].messages
    assert last[-1].role == "user" and "Find the mistake" in last[-1].content
    assert finished(events).outcome == "passed"


def test_fit_context_shortens_a_huge_message_instead_of_overflowing() -> None:
    from agent.events import ChatMessage

    backend = ScriptedBackend([], n_ctx=300)
    messages = [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role="user", content="task " + "x " * 1000),
    ]
    fitted = fit_context(messages, backend, max_tokens=100, turn=1)
    assert fitted.trimmed is not None
    assert fitted.prompt_tokens + fitted.max_tokens <= 300
    assert "characters cut to fit the context" in fitted.messages[1].content


def test_function_env_without_tests_runs_the_program(settings: Settings) -> None:
    env = FunctionEnv(timeout_s=10)
    session, _ = session_for(
        [block("print('hi')"), block("raise SystemExit(3)")], settings, tests=[], env=env
    )
    done = finished(drain(session.start()))
    assert done.outcome == "passed"


def test_header_records_task_model_and_config(settings: Settings) -> None:
    session, _ = session_for([RIGHT], settings, hidden=["assert add(0, 0) == 0"])
    events = drain(session.start())
    header = events[0]
    assert isinstance(header, SessionStarted) and header.seq == 0
    assert header.task.hidden_tests == ["assert add(0, 0) == 0"]
    assert header.purpose == "solve" and header.config["max_turns"] == 4
    assert header.fixloop_version


def test_environment_response_format_reaches_the_backend_and_the_log(settings: Settings) -> None:
    class JsonEnv(FunctionEnv):
        response_format = {"type": "json_object", "schema": {"type": "object"}}  # noqa: RUF012

    session, backend = session_for([RIGHT], settings, env=JsonEnv())
    events = drain(session.start())
    sent = next(e for e in events if isinstance(e, PromptSent))
    assert sent.response_format == JsonEnv.response_format
    assert backend.calls[0].response_format == JsonEnv.response_format


def test_after_a_duplicate_later_repairs_are_sampled_too(settings: Settings) -> None:
    other = block("def add(a, b):\n    return a * b + 1")
    session, backend = session_for([WRONG, WRONG, other, RIGHT], settings)
    events = drain(session.start())
    assert [e.duplicate_of for e in events if isinstance(e, CodeProposed)] == [None, 1, None, None]
    temps = [c.params.temperature for c in backend.calls]
    assert temps[:2] == [0.0, 0.0] and temps[2] >= 0.8 and temps[3] >= 0.8
    assert len({c.params.seed for c in backend.calls[2:]}) == 2
    assert finished(events).outcome == "passed"


def test_a_repeated_malformed_reply_is_free_and_resampled_hot(settings: Settings) -> None:
    """The 1.5B model, greedy, sent the same refused reply three turns running."""
    bad = "Sure! Adding is easy."
    settings = settings.model_copy(update={"max_turns": 2})
    session, backend = session_for([bad, bad, bad, RIGHT], settings)
    events = drain(session.start())
    assert [e.turn for e in events if isinstance(e, FormatError)] == [1, 2, 3]
    assert [e.turn for e in events if isinstance(e, RepairRequested)] == [1]
    temps = [c.params.temperature for c in backend.calls]
    assert temps[:2] == [0.0, 0.0] and temps[2] >= 0.8 and temps[3] > temps[2]
    # The repeat is dropped: the hot requests are the second request again.
    assert backend.calls[2].messages == backend.calls[1].messages == backend.calls[3].messages
    done = finished(events)
    assert done.outcome == "passed" and done.turns == 4  # repeats did not use the budget
    # The fold says so (evals count pass-within-t from it): the repeats are free.
    from agent.episode import fold

    episode = fold(events)
    assert [a.duplicate_of for a in episode.attempts] == [None, 1, 1, None]
    assert [a.counts for a in episode.attempts] == [True, False, False, True]
    assert episode.first_pass_within() == 2
