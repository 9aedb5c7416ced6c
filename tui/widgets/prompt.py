"""The multi-line prompt: Enter sends, Shift+Enter or Ctrl+J adds a line, Up/Down recall history."""

from __future__ import annotations

from typing import Literal

from textual import events
from textual.message import Message
from textual.widgets import TextArea

PromptMode = Literal["task", "feedback"]

TITLES: dict[PromptMode, str] = {
    "task": "Task",
    "feedback": "Feedback",
}
PLACEHOLDERS: dict[PromptMode, str] = {
    "task": "Describe a function to write; add `assert` lines as tests. Enter sends.",
    "feedback": "Tell the agent what is wrong (Enter sends, Esc leaves feedback mode).",
}


class PromptInput(TextArea):
    """A TextArea that submits on Enter and keeps a history of what was sent."""

    DEFAULT_CSS = """
    PromptInput {
        height: auto;
        min-height: 3;
        max-height: 10;
        border: round $primary 60%;
        border-title-color: $text-accent;
        border-subtitle-color: $text-muted;
        padding: 0 1;
    }
    PromptInput:focus { border: round $primary; }
    PromptInput.-feedback { border: round $warning; }
    """

    class Submitted(Message):
        def __init__(self, prompt: PromptInput, text: str, mode: PromptMode) -> None:
            super().__init__()
            self.prompt = prompt
            self.text = text
            self.mode = mode

        @property
        def control(self) -> PromptInput:
            return self.prompt

    class ModeLeft(Message):
        """Esc in feedback mode: back to typing tasks."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            "",
            id=id,
            soft_wrap=True,
            show_line_numbers=False,
            tab_behavior="focus",
            highlight_cursor_line=False,
            placeholder=PLACEHOLDERS["task"],
        )
        self.sent: list[str] = []
        self._history_index: int | None = None  # None: editing a new entry
        self._draft = ""
        self.mode: PromptMode = "task"
        self.border_title = TITLES["task"]
        self.border_subtitle = "enter send · ctrl+j newline · ↑↓ history"

    def on_mount(self) -> None:
        self.cursor_blink = getattr(self.app, "blink", True)

    def set_mode(self, mode: PromptMode, subtitle: str | None = None) -> None:
        self.mode = mode
        self.border_title = TITLES[mode] if subtitle is None else f"{TITLES[mode]} {subtitle}"
        self.placeholder = PLACEHOLDERS[mode]
        self.set_class(mode == "feedback", "-feedback")

    def submit(self) -> None:
        text = self.text.strip()
        if not text:
            return
        if not self.sent or self.sent[-1] != text:
            self.sent.append(text)
        self._history_index = None
        self._draft = ""
        self.clear()
        self.post_message(self.Submitted(self, text, self.mode))

    async def _on_key(self, event: events.Key) -> None:
        key = event.key
        if key == "enter":
            event.stop()
            event.prevent_default()
            self.submit()
            return
        if key in ("shift+enter", "ctrl+j", "alt+enter"):
            event.stop()
            event.prevent_default()
            start, end = self.selection
            self._replace_via_keyboard("\n", start, end)
            return
        if key == "escape" and self.mode == "feedback":
            event.stop()
            event.prevent_default()
            self.post_message(self.ModeLeft())
            return
        if key == "up" and self.cursor_location[0] == 0 and self._recall(-1):
            event.stop()
            event.prevent_default()
            return
        last_line = self.document.line_count - 1
        if key == "down" and self.cursor_location[0] == last_line and self._recall(+1):
            event.stop()
            event.prevent_default()
            return
        await super()._on_key(event)

    def _recall(self, step: int) -> bool:
        """Move through history; True if the text changed."""
        if not self.sent:
            return False
        if self._history_index is None:
            if step > 0:
                return False
            self._draft = self.text
            index = len(self.sent) - 1
        else:
            index = self._history_index + step
        if index >= len(self.sent):
            self._history_index = None
            self.load_text(self._draft)
        elif index < 0:
            return False
        else:
            self._history_index = index
            self.load_text(self.sent[index])
        self.move_cursor(self.document.end)
        return True
