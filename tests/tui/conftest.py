"""Shared pieces for the TUI tests: tmp settings, scripted apps, polling helpers."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text
from textual import events
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Static

from agent.backends.base import StreamChunk
from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from tui.app import FixloopApp

TASK = "Write a function add(a, b) that returns the sum of a and b."
TESTS = ["assert add(1, 2) == 3", "assert add(-4, 4) == 0"]

# The first attempt subtracts (fails both tests); the repair adds.
BAD_REPLY = (
    "Here is a function that combines the two numbers as asked. It takes two arguments, "
    "`a` and `b`, and returns one value. It has no side effects, does not print anything, "
    "and works for integers as well as floats, since Python's arithmetic operators accept "
    "both. Negative numbers need no special handling either: the operator takes care of "
    "the sign. The function is small enough that a docstring would only repeat its name, "
    "so a short comment explains the one line of logic instead. Call it as `add(1, 2)`.\n\n"
    "```python\ndef add(a, b):\n    # combine the two arguments\n    return a - b\n```\n"
)
GOOD_REPLY = (
    "You are right, it must add. Here is the corrected function.\n\n"
    "```python\ndef add(a, b):\n    # the sum of both arguments\n    return a + b\n```\n"
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        model="scripted",
        sessions_dir=tmp_path / "sessions",
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        max_turns=1,
        exec_timeout=10,
    )


class GatedBackend(ScriptedBackend):
    """The scripted backend, but the first reply stops after `gate_after` characters until
    `gate` is set: a test can look at a half-streamed reply without racing the stream."""

    def __init__(self, replies: list[str], gate_after: int, **kwargs: Any) -> None:
        super().__init__(replies, **kwargs)
        self.gate = threading.Event()
        self.gate_after = gate_after

    def stream_chat(self, messages, params, response_format=None):  # type: ignore[no-untyped-def]
        chunks = super().stream_chat(messages, params, response_format)
        return self._gated(chunks) if len(self.calls) == 1 else chunks

    def _gated(self, chunks: Iterator[StreamChunk]) -> Iterator[StreamChunk]:
        sent = 0
        for chunk in chunks:
            if sent >= self.gate_after:
                self.gate.wait(60)
            sent += len(chunk.text)
            yield chunk


def scripted_app(
    settings: Settings, replies: list[str], delay_s: float = 0.0
) -> tuple[FixloopApp, ScriptedBackend]:
    backend = ScriptedBackend(replies, delay_s=delay_s)
    app = FixloopApp(settings, backend_factory=lambda _s: backend, blink=False)
    return app, backend


async def wait_until(
    pilot: Pilot, condition: Callable[[], object], timeout: float = 30.0, what: str = ""
) -> None:
    """Let the app run until `condition()` is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await pilot.pause(0.02)


async def type_text(pilot: Pilot, text: str) -> None:
    """Type text into the focused widget; newlines as ctrl+j (Enter would send)."""
    keys: list[str] = []
    for char in text:
        keys.append("ctrl+j" if char == "\n" else char)
    await pilot.press(*keys)


async def paste(pilot: Pilot, text: str) -> None:
    """Paste text into the focused widget (as a terminal's bracketed paste does)."""
    pilot.app.post_message(events.Paste(text))
    await pilot.pause()


def plain(widget: Widget) -> str:
    """The text a Static shows (markup and styles dropped)."""
    assert isinstance(widget, Static), widget
    content = widget.content
    if isinstance(content, Text):
        return content.plain
    if isinstance(content, str):
        return Text.from_markup(content).plain
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    console.print(content)
    return console.export_text()
