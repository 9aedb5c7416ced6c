"""One mapping from session events to the status bar, for the live chat and the replay."""

from __future__ import annotations

from agent import events as ev
from tui.widgets.status_bar import StatusBar, apply_event


def _states(events: list[ev.Event], *, replay: bool) -> list[tuple[str, int, float | None]]:
    status = StatusBar()
    seen = []
    for event in events:
        apply_event(status, event, lambda turn: turn, replay=replay)
        seen.append((status.state, status.attempt, status.tokens_per_s))
    return seen


EPISODE: list[ev.Event] = [
    ev.TurnStarted(turn=1),
    ev.ModelReplied(turn=1, text="x", completion_tokens=50, duration_s=2.0),
    ev.CodeProposed(turn=1, code="x"),
    ev.EpisodeFinished(outcome="passed", turns=1),
    ev.UserAccepted(turn=1, code="x"),
]


def test_live_shows_every_step_and_waits_for_review() -> None:
    assert _states(EPISODE, replay=False) == [
        ("reading prompt", 1, None),
        ("reading prompt", 1, 25.0),
        ("running tests", 1, 25.0),
        ("passed · review", 1, 25.0),
        ("accepted", 1, 25.0),
    ]


def test_replay_shows_the_outcome_and_the_logged_rate_only() -> None:
    assert _states(EPISODE, replay=True) == [
        ("idle", 1, None),
        ("idle", 1, 25.0),
        ("idle", 1, 25.0),
        ("replay · passed", 1, 25.0),
        ("replay · accepted", 1, 25.0),
    ]
