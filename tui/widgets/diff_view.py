"""The change between two attempts (or between an attempt and the user's edit)."""

from __future__ import annotations

import difflib

from rich.text import Text
from textual.widgets import Collapsible, Static


def unified_diff(old: str, new: str, old_label: str, new_label: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), old_label, new_label, lineterm="", n=2
    )
    return "\n".join(lines)


def render_diff(diff: str) -> Text:
    text = Text()
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        else:
            style = "dim"
        text.append(line + "\n", style=style)
    text.rstrip()
    return text


def diff_stats(diff: str) -> tuple[int, int]:
    added = sum(
        1 for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")
    )
    removed = sum(
        1 for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")
    )
    return added, removed


class DiffView(Collapsible):
    """A collapsed-by-default diff with +added/-removed counts in its title."""

    DEFAULT_CSS = """
    DiffView {
        margin: 0 0 0 2;
        border-top: none;
        padding: 0;
    }
    DiffView > Contents { padding: 0 0 0 2; }
    """

    def __init__(
        self, old: str, new: str, *, old_label: str, new_label: str, collapsed: bool = True
    ) -> None:
        self.diff = unified_diff(old, new, old_label, new_label)
        added, removed = diff_stats(self.diff)
        if self.diff:
            title = f"diff {old_label} → {new_label}  +{added} -{removed}"
            body = render_diff(self.diff)
        else:
            title = f"diff {old_label} → {new_label}: identical"
            body = Text("no change", style="dim")
        super().__init__(Static(body, classes="diff-body"), title=title, collapsed=collapsed)
