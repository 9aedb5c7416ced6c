"""The logged sessions, newest first; Enter replays one read-only."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from agent.session_log import SessionSummary, list_sessions

OUTCOME_STYLE = {
    "passed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "error": "red",
}


def outcome_cell(summary: SessionSummary) -> Text:
    if summary.error:
        return Text("unreadable", style="red italic")
    if summary.outcome is None:
        return Text("unfinished", style="dim")
    return Text(summary.outcome, style=OUTCOME_STYLE.get(summary.outcome, ""))


class SessionBrowser(Screen[None]):
    """A table of sessions under `sessions_dir` (read in a worker: logs can be many)."""

    CSS_PATH = "sessions.tcss"
    BINDINGS = [  # noqa: RUF012 - Textual's declared API
        Binding("escape,q", "close", "Back"),
        Binding("enter", "open", "Replay", priority=True),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    def __init__(self, sessions_dir: Path) -> None:
        super().__init__()
        self.sessions_dir = sessions_dir
        self.summaries: list[SessionSummary] = []

    def compose(self) -> ComposeResult:
        yield Static("Sessions", id="sessions-title")
        yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        yield Static("", id="sessions-empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#sessions", DataTable)
        # The task takes what the other columns leave, so that 80 columns need no scrolling.
        fixed = {"date": 16, "outcome": 10, "turns": 5, "model": 16}
        for key, width in fixed.items():
            table.add_column(key, key=key, width=width)
        padding = 2 * (len(fixed) + 1) + 2  # cell padding and the scrollbar
        task_width = max(20, self.app.size.width - sum(fixed.values()) - padding)
        table.add_column("task", key="task", width=task_width)
        table.loading = True
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="sessions")
    def load(self) -> None:
        summaries = sorted(list_sessions(self.sessions_dir), key=lambda s: s.started, reverse=True)
        self.app.call_from_thread(self._show, summaries)

    def _show(self, summaries: list[SessionSummary]) -> None:
        self.summaries = summaries
        table = self.query_one("#sessions", DataTable)
        table.loading = False
        table.clear()
        for summary in summaries:
            date = datetime.fromtimestamp(summary.started).strftime("%Y-%m-%d %H:%M")
            model = summary.model.split(":")[0]
            table.add_row(
                date,
                outcome_cell(summary),
                str(summary.turns),
                model,
                Text(summary.task or summary.error or "", overflow="ellipsis", no_wrap=True),
                key=str(summary.path),
            )
        title = self.query_one("#sessions-title", Static)
        title.update(f"Sessions · {len(summaries)} logged · enter replays one")
        title.tooltip = str(self.sessions_dir)
        empty = self.query_one("#sessions-empty", Static)
        empty.display = not summaries
        empty.update(
            "No sessions logged yet. Type a task in the chat screen; every session is logged "
            f"under {self.sessions_dir}."
        )
        table.focus()

    @on(DataTable.RowSelected)
    def _selected(self, message: DataTable.RowSelected) -> None:
        self._open(message.row_key.value)

    def action_open(self) -> None:
        table = self.query_one("#sessions", DataTable)
        if not self.summaries:
            return
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        self._open(row_key.value)

    def _open(self, path: str | None) -> None:
        if path is None:
            return
        from tui.screens.replay import ReplayScreen

        self.app.push_screen(ReplayScreen(Path(path)))

    def action_reload(self) -> None:
        self.query_one("#sessions", DataTable).loading = True
        self.load()

    def action_close(self) -> None:
        self.app.pop_screen()
