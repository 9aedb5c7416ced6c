"""One line under the transcript: model, state, tokens per second, attempt k of n, elapsed."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from agent import events as ev


def format_elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


class StatusBar(Static):
    """A read-only summary line; every field is a reactive the screens set."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        width: 1fr;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
    }
    """

    model: reactive[str] = reactive("")
    state: reactive[str] = reactive("idle")
    tokens_per_s: reactive[float | None] = reactive(None)
    attempt: reactive[int] = reactive(0)
    max_attempts: reactive[int] = reactive(0)
    elapsed_s: reactive[float] = reactive(0.0)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._started_at: float | None = None
        self._frozen_elapsed: float | None = None

    def on_mount(self) -> None:
        self.set_interval(0.5, self._tick)

    def start_clock(self, *, reset: bool = True) -> None:
        """Count elapsed time from now (or go on from where it stopped)."""
        base = 0.0 if reset else self.elapsed_s
        self._started_at = time.monotonic() - base
        self._frozen_elapsed = None

    def stop_clock(self, elapsed_s: float | None = None) -> None:
        """Freeze the clock, optionally at a known duration (e.g. from the log)."""
        if elapsed_s is not None:
            self.elapsed_s = elapsed_s
        elif self._started_at is not None:
            self.elapsed_s = time.monotonic() - self._started_at
        self._started_at = None

    @property
    def clock_running(self) -> bool:
        return self._started_at is not None

    def _tick(self) -> None:
        if self._started_at is not None:
            self.elapsed_s = time.monotonic() - self._started_at

    def render(self) -> Text:
        parts: list[tuple[str, str]] = []
        parts.append(("◆ ", "bold"))
        parts.append((self.model or "no model", "bold"))
        parts.append(("  │  ", "dim"))
        parts.append((self.state, "italic"))
        if self.tokens_per_s is not None:
            parts.append(("  │  ", "dim"))
            rate = self.tokens_per_s
            parts.append((f"{rate:.1f} tok/s" if rate < 1000 else f"{rate:,.0f} tok/s", ""))
        if self.attempt:
            parts.append(("  │  ", "dim"))
            total = f" of {self.max_attempts}" if self.max_attempts else ""
            parts.append((f"attempt {self.attempt}{total}", ""))
        parts.append(("  │  ", "dim"))
        parts.append((format_elapsed(self.elapsed_s), ""))
        return Text.assemble(*parts, no_wrap=True, overflow="ellipsis")


def apply_event(
    status: StatusBar,
    event: ev.Event,
    attempt_of: Callable[[int], int],
    *,
    replay: bool = False,
) -> None:
    """What one session event says about the status bar: the one mapping, live and replayed.

    `attempt_of` turns a turn number into the attempt shown ("attempt k of n"). Live, each
    step shows (reading prompt, generating, running tests, repairing, ...) and an outcome
    waits for review; a replay runs nothing, so it shows only the outcome and the user's
    verdict ("replay · passed") and the logged decode rate. The chat screen adds its live
    token-rate measurement on top.
    """
    live = not replay
    match event:
        case ev.SessionStarted():
            status.model = " · ".join(filter(None, [event.model.name, event.config.get("policy")]))
            status.max_attempts = int(event.config.get("max_turns") or status.max_attempts)
        case ev.TurnStarted():
            status.attempt = attempt_of(event.turn)
            if live:
                status.state = "reading prompt"
        case ev.TokenDelta() if live:
            status.state = "generating"
        case ev.ModelReplied() if event.tokens_per_s > 0:
            status.tokens_per_s = event.tokens_per_s
        case ev.CodeProposed() if live:
            status.state = "running tests"
        case ev.ExecFinished() if live:
            status.state = "passed" if event.result.passed else "repairing"
        case ev.UserEdited() if live:
            status.state = "edit passed" if event.result and event.result.passed else "edited"
        case ev.EpisodeFinished():
            status.stop_clock()
            status.state = f"{event.outcome} · review" if live else f"replay · {event.outcome}"
        case ev.UserAccepted():
            status.state = "accepted" if live else "replay · accepted"
        case ev.UserRejected():
            status.state = "rejected" if live else "replay · rejected"
        case _:
            pass
