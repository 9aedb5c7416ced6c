"""Adding rows to docs/BENCHMARKS.md: one place for every bench script's --record."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"


def add_rows(section: str, intro: str, rows: list[str], path: Path = BENCHMARKS) -> None:
    """Append `rows` to the last table of `section` (a "## ..." heading), creating the
    section with `intro` (its text and the table's header lines) at the end if it is new."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if section not in text:
        text = text.rstrip("\n") + f"\n\n{section}\n\n{intro.strip()}\n"
    head, sep, tail = text.partition(section)
    lines = tail.split("\n")
    end = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    last = max(i for i, line in enumerate(lines[:end]) if line.startswith("|"))
    lines[last + 1 : last + 1] = rows
    path.write_text(head + sep + "\n".join(lines), encoding="utf-8")
