"""Standing preferences in the TUI (docs/PREFERENCES.md).

`/prefer TEXT` in the prompt (or "Add a standing preference" in the palette, which asks for
the text with `PreferenceTextPrompt`) makes the chat screen synthesize verifiers in a
worker; `PreferenceReview` then shows the surviving verifier, its cases and the yield, and
dismisses with the verifier to store (`Approved`) or None (discard). An edit is re-checked
on the same cases, in a worker, with the CLI's `check_edit`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.syntax import Syntax
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Static

from agent.preferences import Case, Preference
from agent.preferences.review import (
    EditCheck,
    candidate_lines,
    case_label,
    case_mark,
    check_edit,
    flat_code,
    preference_row,
    proposed_answers,
    run_line,
    yield_line,
)
from agent.preferences.synth import SynthesisResult
from agent.preferences.verify import VerifierRunner
from tui.screens.edit import EditScreen

EXAMPLE = "use pathlib, not os.path"
PREFER_USAGE = f"/prefer needs the preference text, e.g. /prefer {EXAMPLE}"
_COMMAND = re.compile(r"^/(prefer|prefs)(?:\s+(.*))?$", re.S)


def slash_command(text: str) -> tuple[str, str] | None:
    """('prefer', TEXT) or ('prefs', '') for a prompt that is one of these commands; None for
    a task."""
    found = _COMMAND.match(text.strip())
    if found is None:
        return None
    return found.group(1), (found.group(2) or "").strip()


def preference_lines(prefs: list[Preference]) -> list[str]:
    """The stored preferences, one line each, for the transcript."""
    if not prefs:
        return [f"no standing preferences yet: /prefer {EXAMPLE}"]
    lines = [f"standing preferences ({len(prefs)}):"]
    for row in map(preference_row, prefs):
        lines.append(f"{row.id}  {row.state}  v{row.version}  {row.cases} case(s)  {row.text}")
    return lines


def case_text(case: Case, answer: bool | None, marked: bool) -> Text:
    """One case: the expected label, the verifier's verdict (when `marked`), the code."""
    text = Text()
    text.append(f"[{case_label(case):8}]", style="bold green" if case.follows else "bold red")
    if marked:
        mark = case_mark(case, answer)
        text.append(mark, style="green" if answer == case.follows else "bold red")
    text.append("  " + flat_code(case.code))
    return text


class PreferenceTextPrompt(ModalScreen[str | None]):
    """Asks for a preference's text: Enter adds it, Esc cancels."""

    CSS_PATH = "prefer.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]  # noqa: RUF012 - Textual's declared API

    def compose(self) -> ComposeResult:
        with Vertical(id="prefer-ask-dialog"):
            yield Static(
                "Add a standing preference: every attempt will be checked against it. "
                "The model writes verifiers, the sandbox cross-checks them, you approve one.",
                id="prefer-ask-title",
            )
            yield Input(placeholder=EXAMPLE, id="prefer-text")
            yield Footer()

    def on_mount(self) -> None:
        self.query_one("#prefer-text", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, message: Input.Submitted) -> None:
        self.dismiss(message.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass
class Approved:
    """The user approved this verifier (edited by them when `edited`)."""

    source: str
    edited: bool = False


class EditChecked(Message):
    """The re-check of an edited verifier finished (in the review's worker)."""

    def __init__(self, source: str, check: EditCheck | None, error: str | None = None) -> None:
        super().__init__()
        self.source = source
        self.check = check
        self.error = error


class PreferenceReview(ModalScreen[Approved | None]):
    """The surviving verifier, its cases and the yield: approve, edit or discard."""

    CSS_PATH = "prefer.tcss"
    BINDINGS = [  # noqa: RUF012 - Textual's declared API
        Binding("a", "approve", "Approve"),
        Binding("e", "edit", "Edit"),
        Binding("d", "discard", "Discard"),
    ]

    def __init__(self, result: SynthesisResult, runner: VerifierRunner | None = None) -> None:
        super().__init__()
        best = result.best
        if best is None:
            raise ValueError(result.failure or "no verifier survived")
        self.result = result
        self.runner = runner
        self.source = best.source
        self.answers = proposed_answers(result)
        self.edited = False
        self.checking = False
        self.last_check: EditCheck | None = None

    @property
    def cases(self) -> list[Case]:
        return self.result.kept_cases

    def compose(self) -> ComposeResult:
        best = self.result.best
        assert best is not None
        number = self.result.candidates.index(best) + 1
        with Vertical(id="prefer-dialog"):
            yield Static(Text(f"Preference: {self.result.text}"), id="prefer-title")
            with VerticalScroll(id="prefer-body"):
                yield Static(Text(yield_line(self.result)), id="prefer-yield")
                yield Static(Text("\n".join(candidate_lines(self.result))), id="prefer-candidates")
                yield Static(
                    Text(f"proposed verifier (#{number}, accuracy {best.accuracy:.2f}):"),
                    id="prefer-verifier-title",
                    classes="prefer-heading",
                )
                yield Static(self._syntax(), id="prefer-verifier")
                yield Static(
                    Text(f"cases it was checked on ({len(self.cases)}):"),
                    classes="prefer-heading",
                )
                yield Static(self._cases_text(), id="prefer-cases")
            yield Static("", id="prefer-check")
            with Horizontal(id="prefer-buttons"):
                yield Button("Approve (a)", id="approve", variant="success")
                yield Button("Edit (e)", id="edit")
                yield Button("Discard (d)", id="discard", variant="error")
            yield Footer()

    def on_mount(self) -> None:
        self.query_one("#approve", Button).focus()

    def _syntax(self) -> Syntax:
        theme = "monokai" if self.app.current_theme.dark else "default"
        return Syntax(self.source.rstrip("\n"), "python", theme=theme, word_wrap=True)

    def _cases_text(self) -> Text:
        lines = []
        for i, case in enumerate(self.cases):
            marked = i < len(self.answers)
            lines.append(case_text(case, self.answers[i] if marked else None, marked))
        return Text("\n").join(lines)

    def _say(self, text: str, kind: str = "") -> None:
        line = self.query_one("#prefer-check", Static)
        line.update(Text(text))
        line.set_classes(f"-{kind}" if kind else "")

    @on(Button.Pressed)
    def _pressed(self, message: Button.Pressed) -> None:
        action = {"approve": self.action_approve, "edit": self.action_edit}.get(
            message.button.id or "", self.action_discard
        )
        action()

    def action_approve(self) -> None:
        if self.checking:
            self.notify("Wait for the check of your edit to finish.")
            return
        self.dismiss(Approved(self.source, self.edited))

    def action_discard(self) -> None:
        self.dismiss(None)

    def action_edit(self) -> None:
        if self.checking:
            return

        def edited(new: str | None) -> None:
            if new is None:
                return
            if new.strip() == self.source.strip():
                self._say("unchanged")
                return
            self._set_checking(True)
            self._say("checking your edit on the cases in the sandbox …")
            self._check(new)

        self.app.push_screen(
            EditScreen(
                self.source, title="the verifier", on_save="saves and re-checks it on the cases"
            ),
            edited,
        )

    def _set_checking(self, checking: bool) -> None:
        self.checking = checking
        for button in self.query(Button):
            button.disabled = checking and button.id != "discard"

    @work(thread=True, exit_on_error=False, group="prefer-check")
    def _check(self, source: str) -> None:
        min_accuracy = self.result.config.min_accuracy
        try:
            check = check_edit(source, self.cases, min_accuracy, self.runner)
        except Exception as exc:  # a broken sandbox: say so, keep the proposal
            self.post_message(EditChecked(source, None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(EditChecked(source, check))

    @on(EditChecked)
    def _checked(self, message: EditChecked) -> None:
        self._set_checking(False)
        check = message.check
        if check is None:
            self._say(f"could not check the edit: {message.error}", "error")
            return
        self.last_check = check
        if check.problem is not None:
            self._say(f"{check.problem}; the proposal is unchanged", "error")
            return
        self.source, self.edited = message.source, True
        self.answers = list(check.run.answers)
        self.query_one("#prefer-verifier-title", Static).update(Text("your edited verifier:"))
        self.query_one("#prefer-verifier", Static).update(self._syntax())
        self.query_one("#prefer-cases", Static).update(self._cases_text())
        summary = run_line(self.cases, check.accuracy)
        if check.warning is not None:
            self._say(f"{summary}; {check.warning}", "warning")
        else:
            self._say(summary, "good")
