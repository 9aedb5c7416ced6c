"""The episode fold (agent/episode.py): one set of rules for every consumer of a session."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import Settings
from agent.episode import fold
from agent.events import (
    CodeProposed,
    EpisodeFinished,
    Event,
    ExecFinished,
    FormatError,
    RepairRequested,
    TurnStarted,
    UserEdited,
)
from agent.sandbox.result import ExecResult, ExecStatus, TestResult, TestStatus
from agent.session_log import read_session
from tests.agent.test_loop import CRASH, RIGHT, WRONG, session_for
from tests.trainer.data_support import SESSIONS
from trainer.data.episodes import find_logs, read_log, reconstruct
from trainer.data.formats import FEEDBACK_CLOSE, FEEDBACK_OPEN, leti_rows


def result(passed: int, total: int = 3, status: ExecStatus = ExecStatus.FAILED) -> ExecResult:
    tests = [
        TestResult(name=f"t{i}", status=TestStatus.PASSED if i < passed else TestStatus.FAILED)
        for i in range(total)
    ]
    return ExecResult(status=ExecStatus.PASSED if passed == total else status, tests=tests)


def attempt(turn: int, code: str, res: ExecResult | None, dup: int | None = None) -> list[Event]:
    events: list[Event] = [
        TurnStarted(turn=turn),
        CodeProposed(turn=turn, code=code, duplicate_of=dup),
    ]
    if res is not None and dup is None:
        events.append(ExecFinished(turn=turn, result=res, feedback="shown"))
    return events


def test_budget_best_and_first_pass() -> None:
    events = [
        *attempt(1, "a", result(1)),
        TurnStarted(turn=2),
        FormatError(turn=2, message="no code"),
        *attempt(3, "a", None, dup=1),  # free: a duplicate does not count
        *attempt(4, "b", result(1)),  # ties go to the later attempt
        *attempt(5, "c", result(3)),
    ]
    episode = fold(events)
    assert [a.turn for a in episode.budget_attempts()] == [1, 2, 4, 5]
    assert episode.best(within=1).turn == 1
    assert episode.best(within=3).turn == 4
    assert episode.best().turn == 5
    assert episode.first_pass_within() == 4
    assert episode.attempt_at(3).result is not None  # a duplicate carries its original's result


def test_final_proposal_is_the_last_cycle_best_unless_edited_after() -> None:
    events = [
        *attempt(1, "pass", result(3)),
        EpisodeFinished(outcome="passed", turns=1, best_turn=1),
        *attempt(2, "worse", result(0)),
        EpisodeFinished(outcome="failed", turns=1, best_turn=2),
    ]
    code, _, chosen = fold(events).final_proposal()
    assert code == "worse" and chosen is not None and chosen.turn == 2
    edited = [*events, UserEdited(turn=2, original="worse", edited="mine")]
    code, _, chosen = fold(edited).final_proposal()
    assert code == "mine" and chosen is None


def test_loop_logs_the_feedback_the_model_saw(tmp_path: Path) -> None:
    settings = Settings(
        sessions_dir=tmp_path / "sessions", max_turns=3, exec_timeout=10, policy="greedy"
    )
    session, backend = session_for([WRONG, CRASH, RIGHT], settings)
    events = list(session.start())
    session.close()
    runs = [e for e in events if isinstance(e, ExecFinished)]
    repairs = [e for e in events if isinstance(e, RepairRequested)]
    assert [r.result.passed for r in runs] == [False, False, True]
    assert runs[2].feedback is None
    for run, repair, call in zip(runs[:2], repairs, backend.calls[1:], strict=True):
        assert run.feedback and run.feedback in repair.feedback  # the repair turn wraps it
        assert call.messages[-1].content == repair.feedback  # and that is what was sent
    # the trainer's LeTI feedback span is that very text
    log, _ = read_log(session.log_path)
    spans = [
        row["text"].split(FEEDBACK_OPEN, 1)[1].split(FEEDBACK_CLOSE, 1)[0]
        for row in leti_rows(reconstruct(log))
        if FEEDBACK_OPEN in row["text"]
    ]
    assert spans == [runs[0].feedback, runs[1].feedback]
    assert read_session(session.log_path).header.schema_version >= 2


@pytest.mark.parametrize("path", find_logs(SESSIONS), ids=lambda p: p.stem)
def test_old_logs_give_the_feedback_the_model_saw(path: Path) -> None:
    """v1 fixture logs carry no feedback field: the fold renders it as the loop did, and it
    is exactly the text inside the repair turn the model was sent."""
    log, _ = read_log(path)
    if log is None:
        pytest.skip("a deliberately broken fixture")
    episode = reconstruct(log)
    for item in episode.attempts:
        if item.executed and not item.passed and item.feedback_reason == "exec":
            assert item.shown_feedback and item.shown_feedback in (item.feedback or "")
