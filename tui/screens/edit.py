"""Edit an attempt's code yourself: a Python TextArea, or $EDITOR; saving re-runs it."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static, TextArea


class EditScreen(ModalScreen[str | None]):
    """Dismisses with the edited code (save) or None (cancel)."""

    CSS_PATH = "edit.tcss"
    BINDINGS = [  # noqa: RUF012 - Textual's declared API
        Binding("ctrl+s", "save", "Save & run", priority=True),
        Binding("escape", "cancel", "Cancel", priority=True),
        Binding("ctrl+e", "external", "$EDITOR", priority=True),
    ]

    def __init__(
        self, code: str, *, title: str = "", on_save: str = "saves and runs the tests"
    ) -> None:
        super().__init__()
        self.code = code
        self.title_text = title
        self.on_save = on_save  # what ctrl+s does, as the title line says it

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-dialog"):
            yield Static(
                f"Edit {self.title_text} — [b]ctrl+s[/] {self.on_save}, "
                "[b]esc[/] cancels, [b]ctrl+e[/] opens $EDITOR",
                id="edit-title",
            )
            theme = "monokai" if self.app.current_theme.dark else "github_light"
            yield TextArea.code_editor(self.code, language="python", theme=theme, id="code")
            yield Footer()

    def on_mount(self) -> None:
        self.editor.cursor_blink = getattr(self.app, "blink", True)
        self.editor.focus()

    @property
    def editor(self) -> TextArea:
        return self.query_one("#code", TextArea)

    def action_save(self) -> None:
        self.dismiss(self.editor.text)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_external(self) -> None:
        """Hand the code to $EDITOR (or $VISUAL) with the TUI suspended."""
        command = os.environ.get("VISUAL") or os.environ.get("EDITOR")
        if not command:
            self.notify("Set $EDITOR (e.g. export EDITOR=vim) to edit outside fixloop.")
            return
        with tempfile.TemporaryDirectory(prefix="fixloop-edit-") as tmp:
            path = Path(tmp) / "attempt.py"
            path.write_text(self.editor.text, encoding="utf-8")
            try:
                with self.app.suspend():
                    subprocess.run([*shlex.split(command), str(path)], check=False)
            except Exception as exc:  # SuspendNotSupported, missing editor
                self.notify(f"could not run {command!r}: {exc}", severity="error", markup=False)
                return
            self.editor.load_text(path.read_text(encoding="utf-8"))
