"""How one file is shown to the model: whole, or as chosen pieces (definitions, windows)
with the imports they need, long docstrings cut, and an outline of the rest.

Lines starting ``# fixloop:`` in a view are fixloop's notes (line numbers, what is left
out), never the file's text.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.workspace.codeindex import Module, signature
from agent.workspace.edit_format import render_files

NOTE = "# fixloop:"


@dataclass
class Piece:
    """A run of lines of one file shown whole: a definition, a class header or a window."""

    path: str
    start: int
    end: int
    reason: str
    priority: int  # 0 the failing test, 1 what it calls and the traceback, 2 and 3 further
    name: str | None = None  # the definition's qualified name (None for a window)


@dataclass
class FileView:
    """One file as the model sees it."""

    path: str
    text: str  # the rendered view (the whole file, or pieces and an outline)
    reason: str
    whole: bool
    pieces: list[Piece] = field(default_factory=list)
    n_lines: int = 0

    def render(self) -> str:
        if self.whole:
            return f"# {self.reason}, the whole file:\n" + render_files({self.path: self.text})
        return (
            f"# {self.reason}; part of the file ({self.n_lines} lines), edit it only with "
            f"SEARCH/REPLACE blocks or whole definitions:\n" + render_files({self.path: self.text})
        )


def _outline_entries(mod: Module, shown: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """(line, indent level, signature) for definitions not inside a shown range."""

    def covered(start: int, end: int) -> bool:
        return any(a <= start and end <= b for a, b in shown)

    entries: list[tuple[int, int, str]] = []
    for d in dict.fromkeys(mod.top):
        if covered(d.start, d.end):
            continue
        sig = signature(d.node)
        if not sig:
            continue
        if d.kind == "class":
            header_shown = any(a <= d.start <= b for a, b in shown)
            if not header_shown:
                entries.append((d.start, 0, sig))
            for m in mod.defs.values():
                if m.kind == "method" and m.owner == d.name and not covered(m.start, m.end):
                    entries.append((m.start, 1, signature(m.node)))
        else:
            entries.append((d.start, 0, sig))
    return sorted(set(entries))


def _needed_imports(mod: Module, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The import statements binding a name the shown lines use (and __future__ imports)."""
    text = "".join(mod.source(a, b) for a, b in ranges)
    used = set(re.findall(r"[A-Za-z_]\w*", text))
    out = []
    for node, bound in mod.import_nodes:
        future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        if future or bound & used:
            out.append((node.lineno, node.end_lineno or node.lineno))
    return out


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


DOC_LINES = 3  # a longer docstring of shown code is cut to its first lines, unless room is left


def _long_docstrings(
    mod: Module, ranges: list[tuple[int, int]], doc_lines: int
) -> list[tuple[int, int]]:
    """Line ranges to leave out: all but the first lines of docstrings in shown code longer
    than `doc_lines`."""
    out = []
    for d in mod.defs.values():
        body = getattr(d.node, "body", None)
        if not body or not any(a <= d.start and d.end <= b for a, b in ranges):
            continue
        doc = body[0]
        if not (
            isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            continue
        first, last = doc.lineno, doc.end_lineno or doc.lineno
        if last - first + 1 <= doc_lines:
            continue
        opening = mod.lines[first - 1].strip().strip("rRbBuU").strip("\"'")
        keep_to = first if opening else first + 1  # the summary line
        if last - 1 > keep_to:
            out.append((keep_to + 1, last - 1))
    return out


def _subtract(ranges: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = list(ranges)
    for h1, h2 in holes:
        next_out = []
        for a, b in out:
            if h2 < a or b < h1:
                next_out.append((a, b))
                continue
            if a < h1:
                next_out.append((a, h1 - 1))
            if h2 < b:
                next_out.append((h2 + 1, b))
        out = next_out
    return sorted(out)


def _short_imports(
    mod: Module, ranges: list[tuple[int, int]], code: list[tuple[int, int]]
) -> tuple[list[tuple[int, int]], dict[int, str]]:
    """Long ``from x import (a, b, ...)`` statements in `ranges`, as (their lines, a one-line
    version with only the names the shown `code` uses): for test files, never edited."""
    text = "".join(mod.source(a, b) for a, b in code)
    used = set(re.findall(r"[A-Za-z_]\w*", text))
    holes, short = [], {}
    for node, _bound in mod.import_nodes:
        start, end = node.lineno, node.end_lineno or node.lineno
        if not isinstance(node, ast.ImportFrom) or end - start < 3:
            continue
        if not any(a <= start and end <= b for a, b in ranges):
            continue
        names = [a for a in node.names if (a.asname or a.name) in used]
        if not names:
            continue
        stmt = ast.ImportFrom(module=node.module, names=names, level=node.level)
        holes.append((start, end))
        short[start] = f"{NOTE} lines {start}-{end}, only the names used\n{ast.unparse(stmt)}\n"
    return holes, short


def render_partial(
    mod: Module,
    pieces: list[Piece],
    outline: int | None,
    shorten_imports: bool = False,
    doc_lines: int = DOC_LINES,
) -> str:
    """The pieces of a file whole (with `# fixloop: lines a-b` notes; docstrings longer than
    `doc_lines` cut to their first lines), the imports they need, and up to `outline`
    outline entries (signatures with ``...`` bodies) for the rest. `shorten_imports`: a long
    import list shows only the names used (for test files, which are not edited)."""
    code = [(p.start, p.end) for p in pieces]
    whole_ranges = _merge(code + _needed_imports(mod, code))
    all_entries = _outline_entries(mod, whole_ranges)
    entries = all_entries
    if outline is not None:
        entries = entries[:outline] if outline > 0 else []
    holes = _long_docstrings(mod, whole_ranges, doc_lines)
    short: dict[int, str] = {}
    if shorten_imports:
        import_holes, short = _short_imports(mod, whole_ranges, code)
        holes += import_holes
    ranges = _subtract(whole_ranges, holes)
    hole_ends = {b: (a, b) for a, b in holes if a not in short}
    blocks: list[tuple[int, str]] = []
    for a, b in ranges:
        body = mod.source(a, b)
        indent = re.match(r"[ \t]*", body).group(0) if body else ""  # type: ignore[union-attr]
        note = f"{indent}{NOTE} lines {a}-{b}"
        if a - 1 in hole_ends:
            h1, h2 = hole_ends[a - 1]
            note += f" (lines {h1}-{h2}, the rest of the docstring, not shown)"
        blocks.append((a, f"{note}\n{body}"))
    for line, text in short.items():
        blocks.append((line, text))
    for line, level, sig in entries:
        blocks.append((line, "    " * level + sig + "\n"))
    blocks.sort(key=lambda x: x[0])
    out = [f"{NOTE} {mod.path} has {len(mod.lines)} lines; shown: the lines noted below"]
    out[0] += ", and the rest as signatures with ... bodies\n" if entries else "\n"
    previous = None
    for line, text in blocks:
        kind = "code" if text.lstrip().startswith(NOTE) else "sig"
        continues = previous is not None and previous[1] == "code" and line - 1 in hole_ends
        if previous is not None and not continues and (kind == "code" or previous[1] == "code"):
            out.append("\n")
        out.append(text if text.endswith("\n") else text + "\n")
        previous = (line, kind)
    left = len(all_entries) - len(entries)
    if left > 0:
        out.append(f"\n{NOTE} {left} more definitions not listed\n")
    return "".join(out)
