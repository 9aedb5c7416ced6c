"""The episode fold: a session's events -> what happened, derived in one place.

A session is an append-only stream of events (`agent.events`). Everything that asks "what
were the attempts, which one is best within t turns, what would accept keep, what feedback
did the model see?" asks this module: the repair loop (while it runs), the evaluation
runner (pass within 1..t turns), the trainer (rows from logs) and the git workspace
(`fixloop accept` from a log). `Episode.add` is the fold step; `fold(events)` folds a list.

Rules, stated once:
- an attempt *counts* against the turn budget when it ran (code, not a duplicate) or was a
  reply without usable code (a format error); duplicates are free: a program equal to an
  earlier one's, and a malformed reply equal word for word to an earlier malformed reply of
  its cycle (`duplicate_of` names the earlier turn);
- attempts are ranked by (public tests passed, a clean run over a crash); ties go to the
  later attempt; an attempt that never ran ranks below every run;
- a cycle's best attempt is that ranking over its proposals (a cycle that ended on a
  duplicate of a passing program takes that program);
- the proposal `accept` keeps is the last cycle's best attempt, unless the user edited the
  code afterwards, in which case it is their edit;
- the feedback the model saw is the rendered text logged with the execution
  (`ExecFinished.feedback`); logs written before it was logged get it rendered as the loop
  rendered it then (the sandbox renderer at `FEEDBACK_CHARS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agent.events import (
    ChatMessage,
    CodeProposed,
    Committed,
    Correction,
    EpisodeFinished,
    ErrorRaised,
    Event,
    ExecFinished,
    FileEdit,
    FormatError,
    ModelReplied,
    PromptSent,
    RepairRequested,
    SessionStarted,
    Task,
    TurnStarted,
    UserAccepted,
    UserEdited,
    UserFeedback,
    UserRejected,
)
from agent.sandbox.result import ExecResult, ExecStatus

# Feedback shown to the model per turn. Every character is prompt the model must read
# (about 90 tokens/s for the 1.5B on two CPU cores), and the first failures say the most.
FEEDBACK_CHARS = 1600

Score = tuple[int, int]


def score(result: ExecResult | None) -> Score:
    """The ranking of an attempt: tests passed, then a clean run over a crash."""
    if result is None:
        return (-1, 0)
    return (result.n_passed, int(result.status != ExecStatus.ERROR))


@dataclass
class Attempt:
    """One model turn: what it was asked, what it said, and how its code fared."""

    index: int  # position in the session, 0-based, across cycles
    turn: int
    cycle: int  # 0 for the first cycle; +1 after each EpisodeFinished (feedback, retry)
    prompt: list[ChatMessage] = field(default_factory=list)
    reply: str | None = None
    code: str | None = None
    edits: list[FileEdit] = field(default_factory=list)
    format_error: str | None = None
    duplicate_of: int | None = None
    result: ExecResult | None = None  # the public tests
    result_feedback: str | None = None  # the rendered feedback on `result`, as logged
    hidden_result: ExecResult | None = None  # the held-out tests (scoring only)
    feedback: str | None = None  # the repair turn the model saw next
    feedback_reason: str | None = None

    @property
    def counts(self) -> bool:
        """Whether it used up one attempt of the budget (duplicates do not)."""
        if self.duplicate_of is not None:
            return False
        return self.format_error is not None or self.code is not None

    @property
    def executed(self) -> bool:
        return self.code is not None and self.result is not None

    @property
    def passed(self) -> bool:
        return self.executed and self.result is not None and self.result.passed

    @property
    def score(self) -> Score:
        return score(self.result)

    @property
    def shown_feedback(self) -> str:
        """The execution feedback on this attempt as the model was (or would be) shown it."""
        if self.result is None or self.result.passed:
            return ""
        if self.result_feedback is not None:
            return self.result_feedback
        from agent.sandbox import render_feedback  # a log from before feedback was logged

        return render_feedback(self.result, self.code or "", max_chars=FEEDBACK_CHARS)


ActionKind = Literal["feedback", "edit", "accept", "reject", "correction"]


@dataclass
class UserAction:
    kind: ActionKind
    event: UserFeedback | UserEdited | UserAccepted | UserRejected | Correction
    after: int  # number of attempts logged before this action


@dataclass
class Episode:
    """A session as the fold of its events."""

    header: SessionStarted | None = None
    source: Path | None = None
    attempts: list[Attempt] = field(default_factory=list)
    actions: list[UserAction] = field(default_factory=list)
    finishes: list[EpisodeFinished] = field(default_factory=list)
    corrections: list[Correction] = field(default_factory=list)
    commits: list[Committed] = field(default_factory=list)
    errors: list[ErrorRaised] = field(default_factory=list)
    _by_turn: dict[int, Attempt] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------ the fold step

    def add(self, event: Event) -> None:
        """Fold one event in (events other than these are ignored)."""
        if isinstance(event, SessionStarted):
            self.header = event
        elif isinstance(event, TurnStarted):
            attempt = Attempt(index=len(self.attempts), turn=event.turn, cycle=self.cycle)
            self.attempts.append(attempt)
            self._by_turn[event.turn] = attempt
        elif isinstance(event, PromptSent):
            self._attempt(event.turn).prompt = list(event.messages)
        elif isinstance(event, ModelReplied):
            self._attempt(event.turn).reply = event.text
        elif isinstance(event, CodeProposed):
            attempt = self._attempt(event.turn)
            attempt.code, attempt.edits = event.code, list(event.edits)
            attempt.duplicate_of = event.duplicate_of
            if event.duplicate_of is not None and event.duplicate_of in self._by_turn:
                earlier = self._by_turn[event.duplicate_of]
                attempt.result, attempt.result_feedback = earlier.result, earlier.result_feedback
        elif isinstance(event, FormatError):
            attempt = self._attempt(event.turn)
            attempt.format_error = event.message
            attempt.duplicate_of = self._malformed_before(attempt)
        elif isinstance(event, ExecFinished):
            attempt = self._attempt(event.turn)
            if event.hidden:
                attempt.hidden_result = event.result
            else:
                attempt.result, attempt.result_feedback = event.result, event.feedback
        elif isinstance(event, RepairRequested):
            attempt = self._attempt(event.turn)
            attempt.feedback, attempt.feedback_reason = event.feedback, event.reason
        elif isinstance(event, UserFeedback):
            self.actions.append(UserAction("feedback", event, len(self.attempts)))
        elif isinstance(event, UserEdited):
            self.actions.append(UserAction("edit", event, len(self.attempts)))
        elif isinstance(event, UserAccepted):
            self.actions.append(UserAction("accept", event, len(self.attempts)))
        elif isinstance(event, UserRejected):
            self.actions.append(UserAction("reject", event, len(self.attempts)))
        elif isinstance(event, EpisodeFinished):
            self.finishes.append(event)
        elif isinstance(event, Correction):
            if event.source == "edit":  # older logs: the same edit as its UserEdited
                return
            self.corrections.append(event)
            self.actions.append(UserAction("correction", event, len(self.attempts)))
        elif isinstance(event, Committed):
            self.commits.append(event)
        elif isinstance(event, ErrorRaised):
            self.errors.append(event)

    def _attempt(self, turn: int) -> Attempt:
        if turn not in self._by_turn:  # an event for a turn whose TurnStarted was lost
            attempt = Attempt(index=len(self.attempts), turn=turn, cycle=self.cycle)
            self.attempts.append(attempt)
            self._by_turn[turn] = attempt
        return self._by_turn[turn]

    # ------------------------------------------------------------ questions

    @property
    def cycle(self) -> int:
        """The number of the cycle in progress (or the next one): finished cycles so far."""
        return len(self.finishes)

    @property
    def session_id(self) -> str:
        assert self.header is not None
        return self.header.session_id

    @property
    def task(self) -> Task:
        assert self.header is not None
        return self.header.task

    @property
    def outcome(self) -> EpisodeFinished | None:
        """The last EpisodeFinished is the session's outcome."""
        return self.finishes[-1] if self.finishes else None

    def attempt_at(self, turn: int) -> Attempt | None:
        return self._by_turn.get(turn)

    def _malformed_before(self, attempt: Attempt) -> int | None:
        """The turn of an earlier malformed reply of the cycle that this one repeats."""
        text = (attempt.reply or "").strip()
        for earlier in self.attempts:
            if earlier is attempt or earlier.cycle != attempt.cycle:
                continue
            same = (earlier.reply or "").strip() == text
            if earlier.format_error is not None and earlier.duplicate_of is None and same:
                return earlier.turn
        return None

    def budget_attempts(self, cycle: int | None = None) -> list[Attempt]:
        """The attempts that count against the turn budget, in order."""
        return [a for a in self.attempts if a.counts and (cycle is None or a.cycle == cycle)]

    def best(self, cycle: int | None = None, within: int | None = None) -> Attempt | None:
        """The best proposal (of one cycle, among its first `within` counted attempts)."""
        best: Attempt | None = None
        used = 0
        for attempt in self.attempts:
            if cycle is not None and attempt.cycle != cycle:
                continue
            used += attempt.counts
            if within is not None and used > within:
                break
            if attempt.code is None or attempt.duplicate_of is not None:
                continue
            if best is None or attempt.score >= best.score:  # ties go to the later attempt
                best = attempt
        return best

    def cycle_best(self, cycle: int) -> Attempt | None:
        """A cycle's result: its best attempt, or the passing program it ended on again."""
        mine = [a for a in self.attempts if a.cycle == cycle]
        if mine and mine[-1].duplicate_of is not None and mine[-1].passed:
            return self._by_turn.get(mine[-1].duplicate_of)
        return self.best(cycle=cycle)

    def first_pass_within(self) -> int | None:
        """How many counted attempts it took to pass the public tests (None: never)."""
        for used, attempt in enumerate(self.budget_attempts(), start=1):
            if attempt.passed:
                return used
        return None

    def final_proposal(self) -> tuple[str, list[FileEdit], Attempt | None] | None:
        """What accept keeps: (code, edits, attempt), the attempt None for a user's edit."""
        cycles = sorted({a.cycle for a in self.attempts if a.code is not None})
        best = self.cycle_best(cycles[-1]) if cycles else None
        last_edit = next(
            (a for a in reversed(self.actions) if isinstance(a.event, UserEdited)), None
        )
        if last_edit is not None and (best is None or last_edit.after > best.index):
            edit = last_edit.event
            assert isinstance(edit, UserEdited)
            return edit.edited, [], None
        if best is None or best.code is None:
            return None
        return best.code, list(best.edits), best


def fold(
    events: list[Event], header: SessionStarted | None = None, source: Path | None = None
) -> Episode:
    """The episode of a session's events (the header may be among them or given)."""
    episode = Episode(header=header, source=source)
    for event in events:
        episode.add(event)
    return episode
