"""Messages the thread workers post to the UI (workers never touch widgets)."""

from __future__ import annotations

from textual.message import Message

from agent.backends.base import Backend
from agent.events import Event


class AgentEvent(Message):
    """One event from the agent session, in the order the session produced it."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class SessionCycleDone(Message):
    """A worker finished iterating one session call (start, feedback, edit, ...)."""

    def __init__(self, action: str, error: str | None = None) -> None:
        super().__init__()
        self.action = action
        self.error = error


class BackendReady(Message):
    """The model finished loading in its worker."""

    def __init__(self, backend: Backend, load_s: float) -> None:
        super().__init__()
        self.backend = backend
        self.load_s = load_s


class BackendFailed(Message):
    """The model could not be loaded; `error` says why and how to fix it."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error
