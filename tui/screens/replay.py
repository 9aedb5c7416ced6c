"""A logged session played back read-only through the chat screen's own widgets."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from agent.session_log import SessionLogError, SessionRecord, read_session
from tui.widgets.status_bar import StatusBar, apply_event
from tui.widgets.transcript import Transcript


def replay_title(record: SessionRecord) -> str:
    header = record.header
    when = datetime.fromtimestamp(header.ts).strftime("%Y-%m-%d %H:%M")
    outcome = record.outcome.outcome if record.outcome else "unfinished"
    torn = " · last line torn (crash?)" if record.torn_tail else ""
    return f"Replay {header.session_id} · {when} · {header.model.name} · {outcome}{torn}"


class ReplayScreen(Screen[None]):
    """Shows every logged event of one session; nothing can be changed from here."""

    CSS_PATH = "replay.tcss"
    BINDINGS = [  # noqa: RUF012 - Textual's declared API
        Binding("escape,q", "close", "Back"),
        Binding("home", "top", "Top", show=False),
        Binding("end", "bottom", "Bottom", show=False),
    ]

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.record: SessionRecord | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"Replay {self.path.name}", id="replay-title")
        yield Transcript(id="transcript")
        yield StatusBar(id="status")
        yield Footer()

    async def on_mount(self) -> None:
        transcript = self.query_one(Transcript)
        status = self.query_one(StatusBar)
        try:
            self.record = read_session(self.path)
        except SessionLogError as exc:
            await transcript.note(str(exc), "error")
            status.state = "unreadable log"
            return
        record = self.record
        self.query_one("#replay-title", Static).update(replay_title(record))
        status.state = "replay"  # the header, first below, names the model and the turn budget
        for event in [record.header, *record.events]:
            await transcript.apply(event)
            apply_event(status, event, transcript.attempt_in_cycle, replay=True)
        last = record.events[-1].ts if record.events else record.header.ts
        status.stop_clock(last - record.header.ts)
        transcript.focus()

    def action_close(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        else:
            self.app.exit()

    def action_top(self) -> None:
        self.query_one(Transcript).scroll_home(animate=False)

    def action_bottom(self) -> None:
        self.query_one(Transcript).scroll_end(animate=False)
