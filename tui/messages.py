"""Messages the thread workers post to the UI (workers never touch widgets)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

from agent.backends.base import Backend
from agent.events import Event

if TYPE_CHECKING:
    from agent.preferences.synth import SynthesisResult
    from agent.preferences.verify import VerifierRunner


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


class PreferenceProgress(Message):
    """Verifier synthesis for `/prefer` reached `done` of `total` in `stage`."""

    def __init__(self, stage: str, done: int, total: int) -> None:
        super().__init__()
        self.stage = stage
        self.done = done
        self.total = total


class PreferenceSynthesized(Message):
    """Verifier synthesis for `/prefer` ended: a result, an error, or a cancel."""

    def __init__(
        self,
        text: str,
        result: SynthesisResult | None = None,
        runner: VerifierRunner | None = None,
        *,
        error: str | None = None,
        cancelled: bool = False,
    ) -> None:
        super().__init__()
        self.text = text
        self.result = result
        self.runner = runner
        self.error = error
        self.cancelled = cancelled
