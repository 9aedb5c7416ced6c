"""AgentSession: one task, one log, and every action a user can take on it.

Each action is a generator of events; every event is appended to the session
log before it is yielded, so whatever a consumer saw is on disk. Actions:
`start()` (the repair loop), `feedback(text)` (a natural-language correction,
ILF), `edit(code)` (the user's own fix, re-run), `retry()` (a fresh, resampled
cycle), `accept()`, `reject(reason)`. `cancel()` may be called from any thread
and stops generation between tokens. Actions must not run concurrently.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from agent import __version__, prompts
from agent.backends.base import Backend
from agent.environment import Environment, FunctionEnv, Proposal
from agent.errors import FixloopError
from agent.events import (
    ChatMessage,
    Committed,
    ErrorRaised,
    Event,
    RepairRequested,
    SessionStarted,
    Task,
    TaskKind,
    UserAccepted,
    UserEdited,
    UserFeedback,
    UserRejected,
)
from agent.loop import CycleResult, LoopContext, LoopState
from agent.policies import make_cycle
from agent.sandbox.result import ExecResult
from agent.session_log import SessionLogWriter, new_session_id, session_path

if TYPE_CHECKING:
    from agent.config import Settings

Purpose = Literal["chat", "solve", "eval", "seed", "replay"]
SECRET_FIELDS = frozenset({"api_key"})


class SessionStateError(FixloopError, RuntimeError):
    """An action that makes no sense yet (accepting before any attempt exists)."""


def default_env(task: Task, settings: Settings, backend: Backend | None = None) -> Environment:
    """FunctionEnv for function tasks; the git workspace for workspace tasks (its context
    counted in `backend`'s tokens and fitted to its window, when given)."""
    if task.kind == TaskKind.WORKSPACE:
        if not task.workdir or not task.test_cmd:
            raise ValueError(
                "a workspace task needs workdir and test_cmd (e.g. --repo . --test-cmd 'pytest')"
            )
        from agent.workspace import WorkspaceEnv

        if backend is not None:
            return WorkspaceEnv.for_backend(
                Path(task.workdir),
                task.test_cmd,
                task.files or None,
                backend=backend,
                reply_tokens=settings.max_tokens,
            )
        return WorkspaceEnv(Path(task.workdir), task.test_cmd, task.files or None)
    return FunctionEnv(timeout_s=settings.exec_timeout, memory_mb=settings.memory_mb)


def effective_config(settings: Settings) -> dict[str, object]:
    """The settings as logged: JSON values, secrets removed."""
    return settings.model_dump(mode="json", exclude=set(SECRET_FIELDS))


class AgentSession:
    """One task worked on with one model; its whole history in one log file."""

    def __init__(
        self,
        task: Task,
        backend: Backend,
        settings: Settings,
        *,
        purpose: Purpose = "chat",
        env: Environment | None = None,
        sessions_dir: Path | None = None,
        session_id: str | None = None,
    ) -> None:
        self.task = task
        self.backend = backend
        self.settings = settings
        self.purpose: Purpose = purpose
        self.env = env if env is not None else default_env(task, settings, backend)
        if env is None:  # the user's standing preferences, checked on every attempt
            from agent.preferences.env import with_preferences

            self.env = with_preferences(self.env, settings, purpose)
        self.session_id = session_id or new_session_id()
        self.log_path = session_path(sessions_dir or settings.sessions_dir, self.session_id)
        self.state = LoopState()
        self.proposal: Proposal | None = None  # what accept() keeps: best attempt or user edit
        self.edited = False
        self.messages: list[ChatMessage] = []
        self._writer = SessionLogWriter(self.log_path)
        self._ctx = LoopContext(task, backend, self.env, settings, self.state)

    # ------------------------------------------------------------ plumbing
    def _emit(self, event: Event) -> Event:
        """Log the event, fold it into the episode, and hand it on (in that order)."""
        logged = self._writer.write(event)
        self.state.episode.add(logged)
        return logged

    def _logged(
        self, events: Generator[Event, None, CycleResult]
    ) -> Generator[Event, None, CycleResult]:
        """Wrap a cycle: every event it yields is logged and folded before anyone sees it."""
        try:
            while True:
                try:
                    event = next(events)
                except StopIteration as stop:
                    return stop.value
                yield self._emit(event)
        finally:
            events.close()  # a consumer that stops early stops the model too

    def _header(self) -> Iterator[Event]:
        if self._writer.events_written == 0:
            yield self._emit(
                SessionStarted(
                    session_id=self.session_id,
                    fixloop_version=__version__,
                    model=self.backend.identity,
                    config=effective_config(self.settings),
                    task=self.task,
                    purpose=self.purpose,
                    cwd=os.getcwd(),
                )
            )

    def _task_messages(self) -> list[ChatMessage]:
        task_text = self.env.prompt(self.task)  # first: it may set the system prompt
        return prompts.first_messages(self.env.system_prompt, task_text)

    def _cycle(
        self,
        messages: list[ChatMessage],
        *,
        resample_first: bool = False,
        correction: str | None = None,
    ) -> Generator[Event, None, CycleResult]:
        self.messages = messages
        cycle = make_cycle(
            self._ctx, messages, resample_first=resample_first, correction=correction
        )  # the cycle of settings.policy (agent/policies.py)
        result = yield from self._logged(cycle.run())
        if result.proposal is not None:
            self.proposal = result.proposal
            self.edited = False
        return result

    @property
    def turn(self) -> int:
        return self.state.turn

    # ------------------------------------------------------------ actions
    def start(self) -> Iterator[Event]:
        """SessionStarted, then the repair loop on the task, ending with EpisodeFinished."""
        yield from self._header()
        yield from self._cycle(self._task_messages())

    def retry(self) -> Iterator[Event]:
        """A fresh cycle from the task alone, sampled hot so it is a new draw."""
        yield from self._header()
        yield from self._cycle(self._task_messages(), resample_first=True)

    def feedback(self, text: str) -> Iterator[Event]:
        """A user's correction (ILF): the next attempts see the task, the code and the text."""
        yield from self._header()
        code = self.proposal.code if self.proposal else ""
        yield self._emit(UserFeedback(turn=self.state.turn, text=text, code=code))
        messages = self._task_messages()
        if code:
            messages.append(ChatMessage(role="assistant", content=prompts.code_reply(code)))
        correction = prompts.correction_prompt(text, self.env.reply_instruction)
        yield self._emit(RepairRequested(turn=self.state.turn, feedback=correction, reason="user"))
        messages.append(ChatMessage(role="user", content=correction))
        yield from self._cycle(messages, correction=text)

    def edit(self, code: str) -> Iterator[Event]:
        """The user's own version of the attempt: run it, log it, and make it the proposal."""
        yield from self._header()
        original = self.proposal.code if self.proposal else ""
        proposal = Proposal(code=code)
        result: ExecResult | None = None
        try:
            result = self.env.execute(proposal, self.task)
        except Exception as exc:
            yield self._emit(ErrorRaised(message=f"running the edit: {exc}", where="sandbox"))
        # Logged once: the edit is its own correction (the trainer diffs original and edited).
        yield self._emit(
            UserEdited(turn=self.state.turn, original=original, edited=code, result=result)
        )
        self.proposal = proposal
        self.edited = True

    def accept(self) -> Iterator[Event]:
        """Keep the current proposal (a git workspace commits it)."""
        if self.proposal is None:
            raise SessionStateError("nothing to accept yet: no attempt has produced code")
        yield from self._header()
        yield self._emit(
            UserAccepted(turn=self.state.turn, code=self.proposal.code, edited=self.edited)
        )
        try:
            committed: Committed | None = self.env.accept(self.proposal, self.session_id)
        except Exception as exc:
            yield self._emit(ErrorRaised(message=str(exc), where="accept"))
            return
        if committed is not None:
            yield self._emit(committed)

    def reject(self, reason: str = "") -> Iterator[Event]:
        yield from self._header()
        yield self._emit(UserRejected(turn=self.state.turn, reason=reason))

    def cancel(self) -> None:
        """Stop the running cycle between tokens (thread-safe); it ends as "cancelled"."""
        self.state.cancel.set()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> AgentSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
