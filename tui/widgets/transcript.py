"""The scrolling conversation: every agent event becomes (or updates) a widget here.

`Transcript.apply(event)` is the one place events turn into widgets; the live chat
screen and the read-only replay screen both feed it, so a replay looks exactly like
the session did.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import LoadingIndicator, Markdown, Static
from textual.widgets.markdown import MarkdownStream

from agent import events as ev
from tui.widgets.diff_view import DiffView
from tui.widgets.exec_result import ExecResultView, ProgramOutput, inline_output

OUTCOME_TEXT = {
    "passed": "✓ tests passed",
    "failed": "✗ tests still failing",
    "cancelled": "■ cancelled",
    "error": "✗ error",
}


class UserMessage(Static):
    """What the user typed: the task, or a correction."""

    DEFAULT_CSS = """
    UserMessage {
        border-left: outer $accent;
        background: $boost;
        padding: 0 1;
        margin: 1 0 0 0;
    }
    """


class Notice(Static):
    """A one-line note in the transcript (repairs, format errors, accept, commit)."""

    DEFAULT_CSS = """
    Notice { color: $text-muted; padding: 0 0 0 2; }
    Notice.-error { color: $error; }
    Notice.-good { color: $success; }
    Notice.-warning { color: $warning; }
    """


class EpisodeSummary(Static):
    """The outcome of a cycle, with a hint of what the user can do next."""

    DEFAULT_CSS = """
    EpisodeSummary {
        margin: 1 0 0 0;
        padding: 0 1;
        border-left: outer $secondary;
        text-style: bold;
    }
    EpisodeSummary.-passed { color: $text-success; border-left: outer $success; }
    EpisodeSummary.-failed, EpisodeSummary.-error {
        color: $text-error;
        border-left: outer $error;
    }
    EpisodeSummary.-cancelled { color: $text-warning; border-left: outer $warning; }
    """


class AttemptView(Vertical):
    """One attempt: its header, the streamed reply, then its execution and diff."""

    DEFAULT_CSS = """
    AttemptView { height: auto; margin: 1 0 0 0; }
    AttemptView > .attempt-header { color: $text-accent; text-style: bold; }
    AttemptView > Markdown { margin: 0 0 0 2; padding: 0; background: transparent; }
    AttemptView > Markdown MarkdownFence { margin: 0; }
    AttemptView > .attempt-wait { height: 1; margin: 0 0 0 2; }
    AttemptView > .attempt-wait LoadingIndicator { width: 6; height: 1; min-height: 1; }
    AttemptView > .attempt-wait Static { width: auto; color: $text-muted; }
    """

    def __init__(self, turn: int, in_cycle: int, max_turns: int) -> None:
        super().__init__(classes="attempt")
        self.turn = turn
        label = f"Attempt {turn}"
        if max_turns and in_cycle == turn:
            label += f" of {max_turns}"
        elif max_turns:
            label += f"  ({in_cycle} of {max_turns} this round)"
        self.header = Static(label, classes="attempt-header")
        self.reply = Markdown("", classes="reply")
        self.stream: MarkdownStream | None = None
        self.streamed = False
        self.waiting: Horizontal | None = Horizontal(
            LoadingIndicator(), Static("reading the prompt"), classes="attempt-wait"
        )

    def compose(self):  # type: ignore[override]
        yield self.header
        if self.waiting is not None:
            yield self.waiting
        yield self.reply

    async def stop_waiting(self) -> None:
        """The first token arrived (or the reply ended): drop the "reading" indicator."""
        if self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            await waiting.remove()

    async def write(self, fragment: str) -> None:
        await self.stop_waiting()
        if self.stream is None:
            self.stream = Markdown.get_stream(self.reply)
        self.streamed = True
        await self.stream.write(fragment)

    async def finish(self, full_text: str | None) -> None:
        """End streaming; without a stream (a replay) show the whole reply at once."""
        await self.stop_waiting()
        if self.stream is not None:
            await self.stream.stop()
            self.stream = None
        if full_text is not None and not self.streamed:
            await self.reply.update(full_text)


class Transcript(VerticalScroll):
    """The session as widgets, kept scrolled to the newest output."""

    DEFAULT_CSS = """
    Transcript { height: 1fr; padding: 0 1; scrollbar-size-vertical: 1; }
    """

    def __init__(self, *, id: str | None = None, max_turns: int = 0) -> None:
        super().__init__(id=id, can_focus=True)
        self.max_turns = max_turns
        self.attempts: dict[int, AttemptView] = {}
        self.codes: dict[int, str] = {}  # turn -> code proposed (or edited) at that turn
        self.current: AttemptView | None = None
        self.last_code: str | None = None
        self.last_turn: int = 0
        self.outcome: str | None = None
        self.cycle_first_turn: int | None = None  # first turn of the running cycle
        self.cycle_duplicates = 0  # repeats in this cycle: they do not use up the budget
        self.workspace = False  # a workspace task: results are the test command's verdict
        # The user's tree as the workspace task found it (path -> text), set by the live chat
        # screen: each tested attempt then shows its diff against it. None in a replay.
        self.base_text: Callable[[str], str | None] | None = None

    def attempt_in_cycle(self, turn: int) -> int:
        """1-based position of `turn` in its cycle's budget (repeats do not count)."""
        if self.cycle_first_turn is None:
            return turn
        return turn - self.cycle_first_turn + 1 - self.cycle_duplicates

    def on_mount(self) -> None:
        self.anchor()

    async def add(self, widget: Widget, into: Widget | None = None) -> Widget:
        await (into or self).mount(widget)
        return widget

    async def note(self, text: str | Text, kind: str = "") -> None:
        """A one-line note; plain strings are shown as they are (never read as markup)."""
        content = Text(text) if isinstance(text, str) else text
        await self.add(Notice(content, classes=f"-{kind}" if kind else ""))

    async def clear(self) -> None:
        await self.remove_children()
        self.attempts.clear()
        self.codes.clear()
        self.current = None
        self.last_code = None
        self.last_turn = 0
        self.outcome = None
        self.cycle_first_turn = None
        self.cycle_duplicates = 0
        self.workspace = False
        self.base_text = None

    async def finish_stream(self) -> None:
        if self.current is not None and (
            self.current.stream is not None or self.current.waiting is not None
        ):
            await self.current.finish(None)

    async def apply(self, event: ev.Event) -> None:
        """Show one event. Unknown or purely technical events are ignored."""
        match event:
            case ev.SessionStarted():
                self.max_turns = int(event.config.get("max_turns", self.max_turns) or 0)
                self.workspace = event.task.kind == ev.TaskKind.WORKSPACE
                await self.add(UserMessage(Text(event.task.text), classes="task"))
                if event.task.test_cmd:
                    await self.note(f"$ {event.task.test_cmd}   (in {event.task.workdir})")
                if event.task.tests:
                    tests = "\n".join(event.task.tests)
                    await self.note(Text(tests, style="dim"))
            case ev.TurnStarted():
                await self.finish_stream()
                if self.cycle_first_turn is None:
                    self.cycle_first_turn = event.turn
                in_cycle = self.attempt_in_cycle(event.turn)
                self.current = AttemptView(event.turn, in_cycle, self.max_turns)
                self.attempts[event.turn] = self.current
                self.last_turn = event.turn
                await self.add(self.current)
            case ev.TokenDelta():
                attempt = self._attempt(event.turn)
                if attempt is not None:
                    await attempt.write(event.text)
            case ev.ModelReplied():
                attempt = self._attempt(event.turn)
                if attempt is not None:
                    await attempt.finish(event.text)
            case ev.ContextTrimmed():
                await self.note(
                    f"context trimmed: {event.dropped_messages} old message(s) dropped "
                    f"({event.tokens_before} → {event.tokens_after} of {event.n_ctx} tokens)",
                    "warning",
                )
            case ev.CodeProposed():
                if event.duplicate_of is None:
                    await self._code(event.turn, event.code, f"attempt {event.turn}")
                else:  # not run again, and no diff: it is the same program
                    self.last_code = event.code
                    self.cycle_duplicates += 1
                    await self.note(
                        f"same code as attempt {event.duplicate_of}; asking for something new",
                        "warning",
                    )
            case ev.FormatError():
                await self.note(f"⚠ no usable code: {event.message}", "warning")
            case ev.ExecFinished():
                label = "held-out tests" if event.hidden else ""
                if self.workspace and not event.hidden:
                    label = "test command"
                into = self._attempt(event.turn) or self
                await self.add(ExecResultView(event.result, label=label), into=into)
                output = None if self.workspace else inline_output(event.result)
                if output is not None:
                    await self.add(ProgramOutput(output), into=into)
                if self.workspace and not event.hidden:
                    await self._tree_diff(event.turn, event.result.passed, into)
            case ev.RepairRequested():
                # A repeat with no feedback is drawn again from the task (fresh, resample).
                fresh = event.reason == "duplicate" and not event.feedback
                if event.reason == "restart" or fresh:
                    await self.note("↻ starting over from the task")
                elif event.reason != "user":
                    why = {
                        "exec": "execution feedback",
                        "format": "format problem",
                        "duplicate": "the repeated failure",
                    }[event.reason]
                    await self.note(f"↻ repairing from {why}")
            case ev.UserFeedback():
                await self.add(UserMessage(Text(f"Feedback: {event.text}"), classes="feedback"))
            case ev.UserEdited():
                await self.add(UserMessage("You edited the code.", classes="edit"))
                await self.add(
                    DiffView(
                        event.original,
                        event.edited,
                        old_label=f"attempt {event.turn}",
                        new_label="your edit",
                        collapsed=False,
                    )
                )
                self.last_code = event.edited
                if event.result is not None:
                    await self.add(ExecResultView(event.result, label="your edit"))
            case ev.UserAccepted():
                edited = " (with your edit)" if event.edited else ""
                await self.note(f"✓ accepted attempt {event.turn}{edited}", "good")
            case ev.UserRejected():
                reason = f": {event.reason}" if event.reason else ""
                await self.note(f"✗ rejected attempt {event.turn}{reason}", "error")
            case ev.Committed():
                files = ", ".join(event.files)
                await self.note(f"committed {event.sha[:10]} in {event.repo}: {files}", "good")
            case ev.Correction():
                await self.note(f"correction recorded ({event.source})")
            case ev.EpisodeFinished():
                await self.finish_stream()
                self.cycle_first_turn = None
                self.cycle_duplicates = 0
                self.outcome = event.outcome
                await self.add(EpisodeSummary(episode_text(event), classes=f"-{event.outcome}"))
            case ev.ErrorRaised():
                await self.finish_stream()
                where = f" in {event.where}" if event.where else ""
                await self.note(f"error{where}: {event.message}", "error")
            case _:
                pass

    def _attempt(self, turn: int) -> AttemptView | None:
        return self.attempts.get(turn, self.current)

    async def _tree_diff(self, turn: int, passed: bool, into: Widget) -> None:
        """A workspace attempt's change to the user's tree, file by file (open if it passed:
        it is what accepting would commit)."""
        code = self.codes.get(turn)
        if self.base_text is None or code is None:
            return
        from agent.environment import FormatProblem
        from agent.workspace.edits import files_from_rendering

        try:
            files = files_from_rendering(code, self.base_text)
        except (FormatProblem, OSError, ValueError):
            return
        for path, new in files.items():
            old = self.base_text(path)
            await self.add(
                DiffView(
                    old or "",
                    new,
                    old_label=f"{path} (your tree)" if old is not None else "/dev/null",
                    new_label=f"{path} (attempt {turn})",
                    collapsed=not passed,
                ),
                into=into,
            )

    async def _code(self, turn: int, code: str, label: str) -> None:
        previous_turn = max((t for t in self.codes if t < turn), default=None)
        self.codes[turn] = code
        self.last_code = code
        if previous_turn is not None:
            diff = DiffView(
                self.codes[previous_turn],
                code,
                old_label=f"attempt {previous_turn}",
                new_label=label,
            )
            await self.add(diff, into=self._attempt(turn) or self)


def episode_text(event: ev.EpisodeFinished) -> Text:
    clean = event.outcome == "passed" and not event.n_tests
    text = Text("✓ ran cleanly" if clean else OUTCOME_TEXT.get(event.outcome, event.outcome))
    bits = [f"{event.turns} attempt{'s' if event.turns != 1 else ''}"]
    if event.n_tests:
        bits.append(f"{event.best_passed}/{event.n_tests} tests")
    if event.hidden_passed is not None:
        bits.append("held-out " + ("passed" if event.hidden_passed else "failed"))
    if event.duration_s:
        bits.append(f"{event.duration_s:.1f}s")
    text.append("  " + " · ".join(bits), style="not bold")
    return text


class TokenRate:
    """Live tokens-per-second from streamed deltas (one delta is about one token)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.count = 0

    def tick(self) -> float | None:
        """Count one delta; the rate so far once there is enough of it to mean something."""
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now
        self.count += 1
        span = now - self.first
        return (self.count - 1) / span if span > 0.25 else None

    def final(self) -> float | None:
        """Deltas per second between the first and the last delta (None if too few)."""
        if self.first is None or self.last is None or self.count < 2:
            return None
        span = self.last - self.first
        return (self.count - 1) / span if span > 0 else None
