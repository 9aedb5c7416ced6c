"""The fixloop Textual app: `run_app(settings)` opens the chat screen in the current directory."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from agent.config import Settings
from tui.screens.chat import REVIEW_ACTIONS, BackendFactory, ChatScreen

LIGHT_THEME = "textual-light"
DARK_THEME = "textual-dark"

PALETTE: dict[str, tuple[str, str]] = {
    "accept": ("Accept", "Keep the result (commits when in a git repository) · key a"),
    "reject": ("Reject", "Discard the result · key r"),
    "edit": ("Edit code", "Edit the code yourself; it is run again and logged · key e"),
    "feedback": ("Feedback", "Tell the agent what to fix; it refines from your words · key f"),
    "retry": ("Retry", "Run the task again from scratch · key t"),
    "cancel": ("Cancel", "Stop the model mid-stream, keep the log · key esc / ctrl+c"),
    "new_task": ("New task", "Clear the conversation and type a new task · key ctrl+n"),
    "sessions": ("Sessions", "Browse logged sessions and replay one · key ctrl+o"),
    "models": ("Models", "Pick the model and see the active version · key ctrl+l"),
    "add_preference": (
        "Add a standing preference",
        "A rule every attempt is checked against ('use pathlib, not os.path') · /prefer TEXT",
    ),
    "list_preferences": (
        "Standing preferences",
        "List the stored preferences and whether each is active · /prefs",
    ),
}


class FixloopApp(App[None]):
    """Chat with the agent; `replay` opens a logged session read-only instead."""

    TITLE = "fixloop"
    BINDINGS = [  # noqa: RUF012 - Textual's declared API
        Binding("ctrl+t", "toggle_dark", "Theme", show=False),
    ]

    def __init__(
        self,
        settings: Settings,
        *,
        backend_factory: BackendFactory | None = None,
        replay: Path | None = None,
        blink: bool = True,
        cwd: Path | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.blink = blink  # False in tests and screenshots: a cursor frozen on
        self.backend_factory = backend_factory
        self.replay_path = replay
        self.cwd = cwd or Path.cwd()
        self.theme = settings.theme if settings.theme in self.available_themes else DARK_THEME

    def get_default_screen(self) -> Screen:
        if self.replay_path is not None:
            from tui.screens.replay import ReplayScreen

            return ReplayScreen(self.replay_path)
        return ChatScreen(self.settings, self.backend_factory, self.cwd)

    @property
    def chat(self) -> ChatScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, ChatScreen):
                return screen
        return None

    def action_toggle_dark(self) -> None:
        self.theme = LIGHT_THEME if self.current_theme.dark else DARK_THEME

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        chat = self.chat
        if chat is not None and screen is chat:
            for action, (title, help_text) in PALETTE.items():
                if action in REVIEW_ACTIONS and not chat.check_action(action, ()):
                    continue
                if action == "cancel" and not chat.busy:
                    continue
                yield SystemCommand(title, help_text, getattr(chat, f"action_{action}"))
        yield SystemCommand(
            "Light/dark theme",
            "Switch between the light and dark theme · key ctrl+t",
            self.action_toggle_dark,
        )
        yield from super().get_system_commands(screen)


def run_app(settings: Settings, *, replay: Path | None = None) -> None:
    """Open the TUI (blocking until the user quits)."""
    FixloopApp(settings, replay=replay).run()
