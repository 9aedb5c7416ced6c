"""The main screen: type a task, watch the agent write, run and repair, then review.

Every call into the agent session runs in one thread worker (group "agent") that
posts each event back as an `AgentEvent` message; the handlers here, on the UI
thread, are the only code that touches widgets.

`/prefer TEXT` adds a standing preference instead of starting a task: verifier
synthesis runs in a thread worker (group "prefs") with the loaded model, posting
`PreferenceProgress` and then `PreferenceSynthesized`; `/prefs` lists the stored ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, LoadingIndicator, Static

from agent import events as ev
from agent.backends.base import Backend
from agent.config import Settings
from agent.events import Task
from tui.messages import (
    AgentEvent,
    BackendFailed,
    BackendReady,
    PreferenceProgress,
    PreferenceSynthesized,
    SessionCycleDone,
)
from tui.screens.edit import EditScreen
from tui.task_text import task_from_prompt
from tui.widgets.prompt import PromptInput
from tui.widgets.status_bar import StatusBar, apply_event
from tui.widgets.transcript import TokenRate, Transcript, UserMessage

if TYPE_CHECKING:
    from agent.preferences.synth import SynthesisConfig, SynthesisResult
    from agent.session import AgentSession
    from tui.screens.prefer import Approved

BackendFactory = Callable[[Settings], Backend]
REVIEW_ACTIONS = ("accept", "reject", "edit", "feedback", "retry")
WELCOME = (
    "Describe a Python function and add [b]assert[/] lines as its tests, then press Enter.\n"
    "fixloop writes the code, runs the tests in a sandbox and repairs it from the failures.\n"
    "To change this directory's files instead, add the test command as a line [b]$ pytest -x[/]"
    " (accepting commits in a git repository).\n"
    "Then: [b]a[/] accept · [b]r[/] reject · [b]e[/] edit · [b]f[/] feedback · [b]t[/] retry"
    " · [b]ctrl+p[/] all commands"
)


def welcome_text(cwd: Path) -> str:
    home = Path.home()
    where = f"~/{cwd.relative_to(home)}" if cwd.is_relative_to(home) else str(cwd)
    return f"[b]fixloop[/] in {escape(where)}\n\n{WELCOME}"


class _SynthesisCancelled(Exception):
    """Raised from the progress callback to stop a `/prefer` synthesis between steps."""


def default_backend_factory(settings: Settings) -> Backend:
    from agent.backends import make_backend

    return make_backend(settings)


class ChatScreen(Screen[None]):
    """One agent session at a time, driven from the prompt and the review keys."""

    CSS_PATH = "chat.tcss"
    AUTO_FOCUS = "#prompt"

    BINDINGS = [  # noqa: RUF012 - Textual's declared API
        Binding("escape", "cancel", "Cancel", tooltip="Stop the model (keeps the log)"),
        Binding("ctrl+c", "cancel", "Cancel", show=False, priority=True),
        Binding("a", "accept", "Accept", tooltip="Keep this result (commits in a repository)"),
        Binding("r", "reject", "Reject", tooltip="Discard this result"),
        Binding("e", "edit", "Edit", tooltip="Edit the code yourself; it is run again"),
        Binding("f", "feedback", "Feedback", tooltip="Tell the agent what to fix"),
        Binding("t", "retry", "Retry", tooltip="Try the task again from scratch"),
        Binding("i", "focus_prompt", "Prompt", tooltip="Type a new task"),
        Binding("ctrl+n", "new_task", "New", tooltip="Clear and start a new task"),
        Binding("ctrl+o", "sessions", "Sessions", tooltip="Browse logged sessions"),
        Binding("ctrl+l", "models", "Models", tooltip="Pick a model"),
    ]

    busy: reactive[bool] = reactive(False, bindings=True)
    can_review: reactive[bool] = reactive(False, bindings=True)
    model_ready: reactive[bool] = reactive(False, bindings=True)

    def __init__(
        self,
        settings: Settings,
        backend_factory: BackendFactory | None = None,
        cwd: Path | None = None,
    ) -> None:
        super().__init__()
        self.cwd = cwd or Path.cwd()
        self.settings = settings
        self.backend_factory = backend_factory or default_backend_factory
        self.backend: Backend | None = None
        self.session: AgentSession | None = None  # once a task was sent
        self.pending_task: str | None = None
        self.rate = TokenRate()
        self.cycle_errors: list[str] = []  # ErrorRaised messages of the running call
        self.cancel_requested_at: float | None = None
        self.last_cycle_s: float | None = None  # cancel -> control back, for tests
        self.last_log_path: Path | None = None  # the newest session's log, kept after it closes
        self.model_failed = False  # the last load failed: nothing loads until one is picked
        self.synthesizing = False  # a /prefer synthesis holds the model (busy is set too)
        self._prefer_cancel = threading.Event()

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Transcript(id="transcript", max_turns=self.settings.max_turns)
        with Horizontal(id="loading"):
            yield LoadingIndicator()
            yield Static(f"loading {self.settings.model} …", id="loading-text")
        yield PromptInput(id="prompt")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.status.model = self.settings.model
        self.status.max_attempts = self.settings.max_turns
        self.transcript.mount(Static(welcome_text(self.cwd), id="welcome"))
        self.load_model()

    @property
    def transcript(self) -> Transcript:
        return self.query_one("#transcript", Transcript)

    @property
    def prompt(self) -> PromptInput:
        return self.query_one("#prompt", PromptInput)

    @property
    def status(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    # ------------------------------------------------------------------ model
    def load_model(self, settings: Settings | None = None) -> None:
        """(Re)load the model in a worker; the prompt stays usable meanwhile."""
        if settings is not None:
            self.settings = settings
        self.model_ready = False
        self.model_failed = False
        self.backend = None
        self.status.model = self.settings.model
        self.status.state = "loading model"
        self.query_one("#loading-text", Static).update(f"loading {self.settings.model} …")
        self.query_one("#loading").display = True
        self._load_backend(self.settings)

    @work(thread=True, exclusive=True, exit_on_error=False, group="model")
    def _load_backend(self, settings: Settings) -> None:
        started = time.monotonic()
        try:
            backend = self.backend_factory(settings)
        except Exception as exc:  # the message already says how to fix it
            self.post_message(BackendFailed(str(exc)))
            return
        self.post_message(BackendReady(backend, time.monotonic() - started))

    @on(BackendReady)
    def _backend_ready(self, message: BackendReady) -> None:
        self.backend = message.backend
        self.model_ready = True
        self.query_one("#loading").display = False
        self.status.model = message.backend.identity.name
        self.status.state = "ready"
        self.log.info(f"{message.backend.identity.name} loaded in {message.load_s:.1f}s")
        if self.pending_task is not None:
            text, self.pending_task = self.pending_task, None
            self.start_task(text)

    @on(BackendFailed)
    async def _backend_failed(self, message: BackendFailed) -> None:
        self.query_one("#loading").display = False
        self.status.state = "model failed to load"
        self.model_failed = True
        self.pending_task = None
        await self.transcript.note(f"could not load the model: {message.error}", "error")
        self.notify(
            message.error, title="Model failed to load", severity="error", timeout=10, markup=False
        )

    # ------------------------------------------------------------------ prompt
    @on(PromptInput.Submitted)
    async def _submitted(self, message: PromptInput.Submitted) -> None:
        if self.busy:
            self.notify("The agent is still working: press Esc to cancel it first.")
            message.prompt.load_text(message.text)
            return
        if message.mode == "feedback":
            self.prompt.set_mode("task")
            self.send_feedback(message.text)
            return
        from tui.screens.prefer import slash_command

        command = slash_command(message.text)
        if command is None:
            self.start_task(message.text)
        elif command[0] == "prefer":
            await self.add_preference(command[1])
        else:
            await self.list_preferences()

    @on(PromptInput.ModeLeft)
    def _mode_left(self) -> None:
        self.prompt.set_mode("task")
        self.transcript.focus()

    def start_task(self, text: str) -> None:
        if self.backend is None:
            self.pending_task = text
            self.notify("The model is still loading; the task starts as soon as it is ready.")
            return
        self._close_session()
        welcome = self.transcript.query("#welcome")
        if welcome:
            welcome.remove()
        task = task_from_prompt(text, self.cwd)
        backend = self.backend
        self.run_session("start", lambda: self._new_session_events(task, backend))

    def _new_session_events(self, task: Task, backend: Backend) -> Iterator[ev.Event]:
        """Runs in the worker: a workspace session copies the repository, which takes time."""
        from agent.session import AgentSession

        session = AgentSession(
            task, backend, self.settings, purpose="chat", sessions_dir=self.settings.sessions_dir
        )
        self.app.call_from_thread(self._session_created, session)
        yield from session.start()

    def _session_created(self, session: AgentSession) -> None:
        from agent.workspace import WorkspaceEnv

        self.session = session
        self.last_log_path = session.log_path
        if isinstance(session.env, WorkspaceEnv):  # attempts show their diff to the user's tree
            self.transcript.base_text = session.env.base_text
        notice = session.env.notice
        if notice:
            self.notify(str(notice), title="Workspace", timeout=8, markup=False)

    def send_feedback(self, text: str) -> None:
        if self.session is None:
            return
        self.run_session("feedback", lambda: self.session.feedback(text))

    # ------------------------------------------------------------------ preferences
    def synthesis_config(self) -> SynthesisConfig:
        """The CLI's defaults (`fixloop prefs add`), with the configured verifier timeout."""
        from agent.preferences.synth import SynthesisConfig

        return SynthesisConfig(timeout_s=self.settings.preference_timeout)

    async def add_preference(self, text: str) -> None:
        """`/prefer TEXT`: synthesize verifiers for TEXT in a worker, then review them."""
        from tui.screens.prefer import PREFER_USAGE

        text = text.strip()
        if not text:
            await self.transcript.note(PREFER_USAGE, "error")
            return
        if self.busy:
            self.notify("The agent is still working: press Esc to cancel it first.")
            return
        if self.backend is None:
            if self.model_failed:
                why = "no model is loaded (it failed to load): pick one with ctrl+l"
            else:
                why = "the model is still loading: wait until the status bar says ready"
            await self.transcript.note(
                f"cannot add the preference: {why}, then /prefer again", "error"
            )
            return
        config = self.synthesis_config()
        self.busy = True
        self.synthesizing = True
        self.can_review = False
        self._prefer_cancel.clear()
        self.status.tokens_per_s = None
        self.status.state = "preference: writing verifiers"
        self.status.start_clock()
        await self.transcript.add(UserMessage(Text(f"/prefer {text}")))
        await self.transcript.note(
            f"the model writes {config.samples} candidate verifiers with examples, the "
            "sandbox cross-checks them; you approve one (Esc cancels)"
        )
        self._synthesize(text, self.backend, config)

    @work(thread=True, exit_on_error=False, group="prefs")
    def _synthesize(self, text: str, backend: Backend, config: SynthesisConfig) -> None:
        from agent.preferences.synth import synthesize
        from agent.preferences.verify import VerifierRunner

        def progress(stage: str, done: int, total: int) -> None:
            if self._prefer_cancel.is_set():
                raise _SynthesisCancelled
            self.post_message(PreferenceProgress(stage, done, total))

        try:
            runner = VerifierRunner(timeout_s=config.timeout_s)
            result = synthesize(text, backend, config, runner=runner, progress=progress)
        except _SynthesisCancelled:
            self.post_message(PreferenceSynthesized(text, cancelled=True))
        except Exception as exc:
            self.post_message(PreferenceSynthesized(text, error=f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(PreferenceSynthesized(text, result, runner))

    @on(PreferenceProgress)
    def _prefer_progress(self, message: PreferenceProgress) -> None:
        if not self._prefer_cancel.is_set():
            self.status.state = f"preference: {message.stage} {message.done}/{message.total}"

    @on(PreferenceSynthesized)
    async def _prefer_synthesized(self, message: PreferenceSynthesized) -> None:
        from agent.preferences.review import yield_line
        from tui.screens.prefer import PreferenceReview

        self.busy = False
        self.synthesizing = False
        self.status.stop_clock()
        self.can_review = self.session is not None
        self.prompt.focus()
        result = message.result
        if message.cancelled:
            self.status.state = "cancelled"
            await self.transcript.note("preference cancelled: nothing stored", "warning")
            return
        if result is None:
            self.status.state = "error"
            await self.transcript.note(f"/prefer failed: {message.error}; nothing stored", "error")
            return
        await self.transcript.note(yield_line(result))
        if result.best is None:
            self.status.state = "no verifier"
            await self.transcript.note(
                f"no verifier for {result.text!r}: {result.failure}; nothing stored", "error"
            )
            return
        self.status.state = "review the verifier"

        async def reviewed(choice: Approved | None) -> None:
            await self._prefer_reviewed(result, choice)

        self.app.push_screen(PreferenceReview(result, message.runner), reviewed)

    async def _prefer_reviewed(self, result: SynthesisResult, choice: Approved | None) -> None:
        from agent.preferences import PreferenceError, PreferenceStore
        from agent.preferences.review import edited_version, stored_line

        if choice is None:
            self.status.state = "discarded"
            await self.transcript.note("discarded: the preference was not stored")
            return
        version = edited_version(result.version(), choice.source)
        try:
            pref = PreferenceStore.for_data_dir(self.settings.data_dir).add(result.text, version)
        except (PreferenceError, OSError) as exc:
            self.status.state = "error"
            await self.transcript.note(f"could not store the preference: {exc}", "error")
            return
        self.status.state = "preference stored"
        await self.transcript.note(stored_line(pref), "good")

    async def list_preferences(self) -> None:
        """`/prefs`: the stored preferences with their state, in the transcript."""
        from agent.preferences import PreferenceError, PreferenceStore
        from tui.screens.prefer import preference_lines

        try:
            prefs = PreferenceStore.for_data_dir(self.settings.data_dir).all()
        except PreferenceError as exc:
            await self.transcript.note(str(exc), "error")
            return
        await self.transcript.note("\n".join(preference_lines(prefs)))

    def action_add_preference(self) -> None:
        from tui.screens.prefer import PreferenceTextPrompt

        async def given(text: str | None) -> None:
            if text is not None:
                await self.add_preference(text)

        self.app.push_screen(PreferenceTextPrompt(), given)

    async def action_list_preferences(self) -> None:
        await self.list_preferences()

    # ------------------------------------------------------------------ worker
    def run_session(self, action: str, call: Callable[[], Iterator[ev.Event]]) -> None:
        if self.busy:
            self.notify("The agent is still working: press Esc to cancel it first.")
            return
        self.busy = True
        self.can_review = False
        self.cycle_errors = []
        self.cancel_requested_at = None
        if action in ("start", "feedback", "retry"):
            self.status.tokens_per_s = None
        self.status.state = {"start": "thinking", "edit": "running your code"}.get(action, action)
        if action in ("start", "feedback", "retry", "edit"):
            self.status.start_clock()
        self._drive(action, call)

    @work(thread=True, exclusive=True, exit_on_error=False, group="agent")
    def _drive(self, action: str, call: Callable[[], Iterator[ev.Event]]) -> None:
        error: str | None = None
        try:
            for event in call():
                self.post_message(AgentEvent(event))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.post_message(SessionCycleDone(action, error))

    @on(AgentEvent)
    async def _agent_event(self, message: AgentEvent) -> None:
        event = message.event
        if self.cancel_requested_at is not None and self.session is not None:
            self.session.cancel()  # a cancel pressed before the cycle began must still stop it
        if isinstance(event, ev.ErrorRaised):
            self.cycle_errors.append(event.message)
        await self.transcript.apply(event)
        self._update_status(event)
        if self.cancel_requested_at is not None and not isinstance(event, ev.EpisodeFinished):
            self.status.state = "cancelling"

    def _update_status(self, event: ev.Event) -> None:
        apply_event(self.status, event, self.transcript.attempt_in_cycle)
        match event:  # the live decode rate, measured here as tokens arrive
            case ev.TurnStarted():
                self.rate.reset()
            case ev.TokenDelta():
                rate = self.rate.tick()
                if rate is not None:
                    self.status.tokens_per_s = rate
            case ev.ModelReplied():
                # Streamed: keep the decode rate measured live (the logged rate includes
                # prompt processing); otherwise the logged one, already shown.
                live = self.rate.final()
                if live is not None:
                    self.status.tokens_per_s = live
            case _:
                pass

    @on(SessionCycleDone)
    async def _cycle_done(self, message: SessionCycleDone) -> None:
        await self.transcript.finish_stream()
        self.busy = False
        if self.cancel_requested_at is not None:
            self.last_cycle_s = time.monotonic() - self.cancel_requested_at
            self.cancel_requested_at = None
        if self.status.clock_running:
            self.status.stop_clock()
        if message.error is not None:
            self.status.state = "error"
            await self.transcript.note(f"{message.action} failed: {message.error}", "error")
            self.notify(
                message.error, title=f"{message.action} failed", severity="error", markup=False
            )
        # A session ends when it is rejected or accepted; an accept that failed (a commit
        # refused, say) leaves it open so that it can be accepted again once fixed.
        accepted = message.action == "accept" and message.error is None and not self.cycle_errors
        if message.action == "reject" or accepted:
            self._close_session()
        self.can_review = self.session is not None
        if self.can_review and not self.prompt.text.strip():
            self.transcript.focus()  # the single-key review actions work straight away
        else:
            self.prompt.focus()

    # ------------------------------------------------------------------ actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in REVIEW_ACTIONS:
            if self.busy or self.session is None or not self.can_review:
                return None  # shown dimmed: there is nothing to review right now
            if action in ("accept", "edit") and self.session.proposal is None:
                return None
            return True
        if action == "cancel":
            return self.busy
        return True

    def action_cancel(self) -> None:
        if not self.busy:
            return
        self.status.state = "cancelling"
        if self.synthesizing:  # stops at the next step (a reply being written finishes first)
            self._prefer_cancel.set()
            return
        if self.cancel_requested_at is None:
            self.cancel_requested_at = time.monotonic()
        if self.session is not None:
            self.session.cancel()

    def action_accept(self) -> None:
        if self.session is not None:
            self.run_session("accept", self.session.accept)

    def action_reject(self) -> None:
        if self.session is not None:
            self.run_session("reject", lambda: self.session.reject(""))

    def action_retry(self) -> None:
        if self.session is not None:
            self.run_session("retry", self.session.retry)

    def action_feedback(self) -> None:
        turn = self.transcript.last_turn
        self.prompt.set_mode("feedback", f"on attempt {turn}" if turn else None)
        self.prompt.focus()

    def action_edit(self) -> None:
        if self.session is None or self.session.proposal is None:
            return
        code = self.session.proposal.code

        def edited(new_code: str | None) -> None:
            if new_code is not None and self.session is not None:
                self.run_session("edit", lambda: self.session.edit(new_code))

        title = "your edit" if self.session.edited else f"attempt {self.transcript.last_turn}"
        self.app.push_screen(EditScreen(code, title=title), edited)

    def action_focus_prompt(self) -> None:
        self.prompt.focus()

    async def action_new_task(self) -> None:
        if self.busy:
            self.notify("Press Esc to cancel the running task first.")
            return
        self._close_session()
        self.can_review = False
        await self.transcript.clear()
        self.status.attempt = 0
        self.status.tokens_per_s = None
        self.status.elapsed_s = 0.0
        self.status.state = "ready" if self.model_ready else "loading model"
        self.prompt.set_mode("task")
        self.prompt.focus()

    def action_sessions(self) -> None:
        from tui.screens.sessions import SessionBrowser

        self.app.push_screen(SessionBrowser(self.settings.sessions_dir))

    def action_models(self) -> None:
        from tui.screens.models import ModelPicker

        def picked(name: str | None) -> None:
            if name and name != self.settings.model:
                if self.busy:
                    self.notify("Cancel the running task before switching models.")
                    return
                self.load_model(self.settings.model_copy(update={"model": name}))

        self.app.push_screen(ModelPicker(self.settings, current=self.settings.model), picked)

    def on_unmount(self) -> None:
        """Quitting mid-generation stops the model (the log records the cancel)."""
        self._prefer_cancel.set()  # a synthesis stops at its next step
        if self.busy and not self.synthesizing and self.session is not None:
            self.session.cancel()
        elif not self.busy or self.synthesizing:
            self._close_session()

    def _close_session(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
