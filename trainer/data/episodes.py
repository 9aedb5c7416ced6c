"""Rebuild what happened in one session from its logged events.

A session log is a `SessionStarted` header followed by events. This module
reads logs only through the agent's reader (`agent.session_log.read_session`),
reporting every log or line it cannot use with its file and line number instead
of giving up, and folds the events into an :class:`Episode` with the agent's one
episode fold (`agent.episode`): the attempts (prompt, reply, code, public and hidden
execution, the feedback the model saw), the user's actions in order, and the outcome.
:func:`judge` then says which code is the session's final good solution and which attempts
were bad, the judgement every preference format is built from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.episode import Attempt, UserAction
from agent.episode import Episode as FoldedEpisode
from agent.events import (
    EPHEMERAL,
    ChatMessage,
    Correction,
    Event,
    SessionStarted,
    Task,
    TaskKind,
    UserAccepted,
    UserEdited,
    UserFeedback,
    UserRejected,
)
from agent.extract import normalize_code
from agent.hashing import text_hash
from agent.prompts import code_reply
from agent.session_log import SessionLogError, read_session

__all__ = ["Attempt", "Episode", "UserAction", "judge", "read_log", "reconstruct"]

# ---------------------------------------------------------------- reading logs


@dataclass(frozen=True)
class LogProblem:
    """A line (or a whole file, line 0) that could not be used, and why."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class SessionLog:
    path: Path
    header: SessionStarted
    events: list[Event]

    @property
    def session_id(self) -> str:
        return self.header.session_id


_WHERE = re.compile(r":(\d+): ")


def read_log(path: Path) -> tuple[SessionLog | None, list[LogProblem]]:
    """Read one session log through the agent's reader; report what could not be used.

    A torn last line (a crash while writing) is skipped and reported; the rest
    of the session is used. A log with a corrupt line anywhere else, no header,
    or a newer schema cannot be trusted and is skipped whole, reported with the
    file and line the reader names.
    """
    path = Path(path)
    try:
        record = read_session(path)
    except SessionLogError as exc:
        message = str(exc)
        where = _WHERE.search(message.removeprefix(str(path)))
        line = int(where.group(1)) if where and message.startswith(str(path)) else 0
        detail = message.removeprefix(f"{path}:{line}: ") if line else message
        return None, [LogProblem(path, line, f"{detail}; session skipped")]
    problems: list[LogProblem] = []
    if record.torn_tail:
        lines = path.read_bytes().rstrip(b"\n").count(b"\n") + 1
        problems.append(
            LogProblem(
                path, lines, "truncated last line (the session stopped while writing it); skipped"
            )
        )
    events: list[Event] = [e for e in record.events if e.type not in EPHEMERAL]
    return SessionLog(path, record.header, events), problems


def find_logs(directory: Path) -> list[Path]:
    """Every session log under `directory` (`*.jsonl`, recursively), in a stable order."""
    directory = Path(directory)
    if directory.is_file():
        return [directory]
    return sorted(p for p in directory.rglob("*.jsonl") if p.is_file())


# ---------------------------------------------------------------- episodes


class Episode(FoldedEpisode):
    """A session rebuilt from its log by the agent's fold, with the trainer's keys."""

    @property
    def model_key(self) -> str:
        assert self.header is not None
        return self.header.model.key

    @property
    def task_key(self) -> str:
        return task_key(self.task)

    def prompt_messages(self) -> list[ChatMessage]:
        """The messages of the first prompt: the task as the model first saw it."""
        for attempt in self.attempts:
            if attempt.prompt:
                return list(attempt.prompt)
        return [ChatMessage(role="user", content=self.task.text)]

    def task_prompt(self) -> str:
        """The task as text: the first user message the model was sent."""
        for message in self.prompt_messages():
            if message.role == "user":
                return message.content
        return self.task.text

    def feedback_kinds(self) -> list[str]:
        """Kinds of feedback here: exec, format, duplicate, user, edit, accept_edited, harvest."""
        kinds = {a.feedback_reason for a in self.attempts if a.feedback_reason}
        kinds |= {"user" for a in self.actions if a.kind == "feedback"}
        kinds |= {"edit" for a in self.actions if a.kind == "edit"}
        kinds |= {a.event.source for a in self.actions if isinstance(a.event, Correction)}
        return sorted(k for k in kinds if k)


def task_key(task: Task) -> str:
    """What identifies a task across sessions: its id, else a hash of its text."""
    if task.task_id:
        return task.task_id
    digest = text_hash(task.text)[:16]  # the held-out rule's identity: case and spacing aside
    return f"text:{digest}"


def reconstruct(log: SessionLog) -> Episode:
    """Attempts, user actions and outcomes of a session: the agent's episode fold."""
    episode = Episode(header=log.header, source=log.path)
    for event in log.events:
        episode.add(event)
    return episode


# ---------------------------------------------------------------- judgement


Source = Literal["model", "user_edit"]
Why = Literal[
    "passed",
    "accepted",
    "edited",
    "failed",
    "failed_hidden",
    "format_error",
    "rejected",
    "criticized",
]


@dataclass(frozen=True)
class Solution:
    """A piece of code judged good or bad, with the context it answers."""

    code: str
    completion: str  # the assistant message: the model's reply, or the user's code fenced
    prompt: list[ChatMessage]  # the messages it answers
    source: Source
    why: Why
    turn: int
    passed: bool | None  # its public tests, where it was run

    @property
    def good(self) -> bool:
        return self.why in ("passed", "accepted", "edited")


@dataclass
class Judgement:
    final: Solution | None  # the session's good solution, if any
    bad: list[Solution]  # attempts judged bad, distinct, never equal to the final


def fence(code: str, task: Task) -> str:
    """Code as an assistant reply, in the form the agent parses.

    A function task's program goes in a python block; a workspace task's code is
    already a rendering of file edits in the reply format, so it is kept as is.
    """
    if task.kind != TaskKind.FUNCTION:
        return code
    return code_reply(code)


def _solution_from_attempt(attempt: Attempt, episode: Episode, why: Why) -> Solution:
    code = attempt.code or ""
    completion = attempt.reply if attempt.reply is not None else fence(code, episode.task)
    return Solution(
        code=code,
        completion=completion,
        prompt=attempt.prompt or episode.prompt_messages(),
        source="model",
        why=why,
        turn=attempt.turn,
        passed=attempt.passed if attempt.executed else None,
    )


def _solution_from_user(code: str, episode: Episode, why: Why, turn: int, passed: bool | None):
    return Solution(
        code=code,
        completion=fence(code, episode.task),
        prompt=episode.prompt_messages(),
        source="user_edit",
        why=why,
        turn=turn,
        passed=passed,
    )


def _timeline(episode: Episode) -> list[Attempt | UserAction]:
    """Attempts and user actions interleaved in log order.

    An action logged after k attempts sorts after attempt k-1 and before attempt k.
    """
    keyed: list[tuple[tuple[int, int], Attempt | UserAction]] = [
        ((a.index, 1), a) for a in episode.attempts
    ]
    keyed += [((action.after, 0), action) for action in episode.actions]
    keyed.sort(key=lambda pair: pair[0])  # stable: actions keep their order
    return [item for _, item in keyed]


def judge(episode: Episode) -> Judgement:
    """The session's final good solution (if any) and its bad attempts.

    Good, in order of authority: the code the user accepted (their edit wins
    over the model's code); else the last passing attempt (public tests, and the
    held-out tests where they were run) or passing user edit that the user
    neither corrected (typed feedback, edit) nor rejected. Bad: failing attempts
    (public or held-out tests), replies without usable code, and code the user
    rejected, corrected by typed feedback, or replaced by an edit (in the session,
    at `accept --edited`, or by a later fix that `harvest` found).
    """
    final: Solution | None = None
    bad: list[Solution] = []
    last_code: tuple[str, Attempt | None] | None = None  # what the user is looking at
    for item in _timeline(episode):
        if isinstance(item, Attempt):
            if item.code is None:
                if item.format_error is not None and item.reply is not None:
                    bad.append(
                        Solution(
                            code="",
                            completion=item.reply,
                            prompt=item.prompt or episode.prompt_messages(),
                            source="model",
                            why="format_error",
                            turn=item.turn,
                            passed=None,
                        )
                    )
                continue
            last_code = (item.code, item)
            if item.passed and item.hidden_result is not None and not item.hidden_result.passed:
                bad.append(_solution_from_attempt(item, episode, "failed_hidden"))
            elif item.passed:
                final = _solution_from_attempt(item, episode, "passed")
            elif item.executed:
                bad.append(_solution_from_attempt(item, episode, "failed"))
            continue
        event = item.event
        if isinstance(event, UserFeedback):
            target = _find_attempt(episode, event.code, before=item.after)
            if target is not None and target.passed:
                bad.append(_solution_from_attempt(target, episode, "criticized"))
            if final is not None and normalize_code(final.code) == normalize_code(event.code):
                final = None
        elif isinstance(event, UserEdited):
            if normalize_code(event.original) != normalize_code(event.edited):
                target = _find_attempt(episode, event.original, before=item.after)
                if target is not None and target.executed and target.passed:
                    bad.append(_solution_from_attempt(target, episode, "criticized"))
                if final is not None and normalize_code(final.code) == normalize_code(
                    event.original
                ):
                    final = None
            passed = event.result.passed if event.result is not None else None
            last_code = (event.edited, None)
            if passed:
                final = _solution_from_user(event.edited, episode, "edited", event.turn, True)
        elif isinstance(event, UserAccepted):
            attempt = _find_attempt(episode, event.code, before=item.after)
            if attempt is not None and not event.edited:
                final = _solution_from_attempt(attempt, episode, "accepted")
            else:
                passed = _user_code_passed(episode, event.code)
                final = _solution_from_user(event.code, episode, "accepted", event.turn, passed)
        elif isinstance(event, Correction):
            _, kept = corrected_code(event)
            target = _find_attempt(episode, final.code, before=item.after) if final else None
            if target is not None and target.executed:
                bad.append(_solution_from_attempt(target, episode, "criticized"))
            final = Solution(
                code=kept,
                completion=kept,  # already in the reply format the agent parses
                prompt=episode.prompt_messages(),
                source="user_edit",
                why="edited",
                turn=target.turn if target else 0,
                passed=None,
            )
            last_code = (kept, None)
        elif isinstance(event, UserRejected):
            if last_code is not None:
                code, attempt = last_code
                if attempt is not None:
                    bad.append(_solution_from_attempt(attempt, episode, "rejected"))
                else:
                    bad.append(_solution_from_user(code, episode, "rejected", event.turn, None))
            final = None
    return Judgement(final=final, bad=_distinct_bad(bad, final))


def corrected_code(correction: Correction) -> tuple[str, str]:
    """(proposed, kept) files of a workspace correction, rendered as the agent's edit replies."""
    from agent.workspace.edit_format import render_files

    return render_files(correction.proposed), render_files(correction.final)


def _find_attempt(episode: Episode, code: str, before: int) -> Attempt | None:
    """The latest attempt before position `before` whose code is `code` (normalized)."""
    wanted = normalize_code(code)
    for attempt in reversed(episode.attempts[:before]):
        if attempt.code is not None and normalize_code(attempt.code) == wanted:
            return attempt
    return None


def _user_code_passed(episode: Episode, code: str) -> bool | None:
    wanted = normalize_code(code)
    for action in reversed(episode.actions):
        event = action.event
        if (
            isinstance(event, UserEdited)
            and event.result is not None
            and normalize_code(event.edited) == wanted
        ):
            return event.result.passed
    return None


def _distinct_bad(bad: list[Solution], final: Solution | None) -> list[Solution]:
    seen = {normalize_code(final.code)} if final is not None else set()
    out: list[Solution] = []
    for solution in bad:
        key = normalize_code(solution.code) if solution.code else "reply:" + solution.completion
        if key in seen:
            continue
        seen.add(key)
        out.append(solution)
    return out
