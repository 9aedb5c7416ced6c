"""Pick the model to chat with; shows every registered model and the active version."""

from __future__ import annotations

import json

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from agent.config import Settings
from agent.models import ModelSpec, Registry
from agent.models.provision import model_status
from agent.models.registry import human_size

STATE_STYLE = {"verified": "green", "unverified": "yellow", "not assembled": "yellow"}


def describe(spec: ModelSpec, state: str) -> str:
    lines = [f"{spec.name}: {spec.description or spec.filename}", f"state: {state}"]
    if spec.lineage:
        lines.append("lineage: " + json.dumps(spec.lineage, default=str)[:300])
    if spec.adapter:
        lines.append(f"adapter: {spec.adapter}")
    return "\n".join(lines)


class ModelPicker(ModalScreen[str | None]):
    """Enter loads the highlighted model for this session; `d` makes it the default."""

    CSS_PATH = "models.tcss"
    BINDINGS = [  # noqa: RUF012 - Textual's declared API
        Binding("escape,q", "close", "Back"),
        Binding("enter", "pick", "Use now"),
        Binding("d", "make_default", "Make default"),
    ]

    def __init__(self, settings: Settings, *, current: str) -> None:
        super().__init__()
        self.settings = settings
        self.current = current
        self.registry = Registry(settings.data_dir)
        self.specs: dict[str, ModelSpec] = {}
        self.states: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="models-dialog"):
            yield Static(
                "Models  [dim]● in use   ★ default (fixloop models use)[/]", id="models-title"
            )
            yield DataTable(id="models", cursor_type="row")
            yield Static("", id="model-detail")
            yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#models", DataTable)
        table.add_column(" ", key="mark", width=2)
        table.add_column("name", key="name")
        table.add_column("kind", key="kind", width=8)
        table.add_column("size", key="size", width=10)
        table.add_column("state", key="state")
        self.refresh_table()
        table.focus()

    def refresh_table(self) -> None:
        table = self.query_one("#models", DataTable)
        table.clear()
        self.specs = self.registry.all()
        active = self.registry.active()
        for name, spec in self.specs.items():
            state = model_status(spec, self.settings.cache_dir).state
            self.states[name] = state
            mark = ("●" if name == self.current else "") + ("★" if name == active else "")
            table.add_row(
                Text(mark, style="bold"),
                Text(name, style="bold" if name == self.current else ""),
                spec.kind,
                human_size(spec.size),
                Text(state, style=STATE_STYLE.get(state, "red")),
                key=name,
            )
        names = list(self.specs)
        if self.current in names:
            table.move_cursor(row=names.index(self.current))

    def _highlighted(self) -> str | None:
        table = self.query_one("#models", DataTable)
        if not self.specs:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    @on(DataTable.RowHighlighted)
    def _show_detail(self, message: DataTable.RowHighlighted) -> None:
        name = message.row_key.value
        if name in self.specs:
            detail = describe(self.specs[name], self.states.get(name, "?"))
            self.query_one("#model-detail", Static).update(detail)

    @on(DataTable.RowSelected)
    def _selected(self, message: DataTable.RowSelected) -> None:
        self.dismiss(message.row_key.value)

    def action_pick(self) -> None:
        self.dismiss(self._highlighted())

    def action_make_default(self) -> None:
        name = self._highlighted()
        if name is None:
            return
        self.registry.set_active(name)
        self.notify(f"{name} is now the default model (`fixloop models use base` resets)")
        self.refresh_table()

    def action_close(self) -> None:
        self.dismiss(None)
