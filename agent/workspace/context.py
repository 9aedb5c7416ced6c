"""What the model sees of a repository: the code that matters to the failure, within a token budget.

Chosen by relevance, not by file order (aider's repository map is the model):

1. the failing test functions (from the test results' node ids and the output), with the
   fixtures they take and the setup of their class;
2. the functions and classes they call and the ones in the traceback (deepest frame first),
   resolved through an AST index of the repository (:mod:`agent.workspace.codeindex`),
   definitions the task names, and files the task names;
3. what those call, one level down (and, with room left, one more);

each shown whole, with its path and line numbers, with the imports it needs (long
docstrings cut to their first lines, then, while room is left, shown whole). A small file
is shown whole; of a big one the rest appears as an outline (signatures, ``...`` bodies).
The budget is in tokens of the model in use (`count`), so what is shown always fits.

A file shown whole may be answered with a whole file; a file shown in part only with
SEARCH/REPLACE blocks or whole definitions (:mod:`agent.workspace.edits` enforces it).
Lines starting ``# fixloop:`` in a view are fixloop's notes (line numbers, what is
left out), never the file's text.

Here the budget is spent; what is relevant is chosen in :mod:`agent.workspace.selection`,
from the failure read by :mod:`agent.workspace.failure`, and each file's view is rendered
by :mod:`agent.workspace.fileview`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.workspace.failure import Failure, is_test_path
from agent.workspace.fileview import DOC_LINES, FileView, Piece
from agent.workspace.selection import SMALL_FILE_LINES, Selector

Counter = Callable[[str], int]

CUT_MARKER = "[fixloop: {} more lines not shown; edit this file with SEARCH/REPLACE blocks only]"


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper estimate (code runs at about 3-4 characters per token)."""
    return math.ceil(len(text) / 3)


@dataclass
class Context:
    """The chosen views, in the order they are shown, and what they cost."""

    views: list[FileView]
    listing: str = ""
    tokens: int = 0
    budget: int = 0
    focus: list[Piece] = field(default_factory=list)  # see `failure_focus`

    @property
    def whole(self) -> list[str]:
        return [v.path for v in self.views if v.whole]

    @property
    def partial(self) -> list[str]:
        return [v.path for v in self.views if not v.whole]

    @property
    def shown(self) -> list[str]:
        return [v.path for v in self.views]

    def render(self) -> str:
        parts = [v.render() for v in self.views]
        if self.listing:
            parts.append(self.listing)
        return "\n".join(parts)


def build_context(
    read: Callable[[str], str | None],
    listed: list[str],
    *,
    failure: Failure,
    named: list[str],
    task_text: str,
    budget_tokens: int,
    count: Counter = estimate_tokens,
    max_listing: int = 40,
) -> Context:
    """The views to show the model, by relevance, within `budget_tokens` (counted by `count`)."""
    safe_read = _safe_reader(read)
    sel = _select(safe_read, listed, count, failure, named, task_text)
    packer = _Packer(sel, safe_read, count, budget_tokens)
    packer.add_pieces()
    packer.add_whole_files()
    packer.add_whole_docstrings()
    packer.add_outlines()
    result = packer.final_views()
    spent = packer.cost(result)
    listing = _listing([p for p in listed if p not in {v.path for v in result}], max_listing)
    if listing and spent + count(listing) <= budget_tokens:
        spent += count(listing)
    else:
        listing = ""
    return Context(result, listing, spent, budget_tokens, failure_focus(sel, result))


def failure_focus(sel: Selector, views: list[FileView]) -> list[Piece]:
    """The functions and methods outside the tests, shown whole, that the failing tests call or
    the traceback passes through (priority 1), in the order shown."""
    found: dict[tuple[str, str], Piece] = {}
    for v in views:
        if is_test_path(v.path):
            continue
        mod = sel.index.module(v.path)
        pieces = [p for p in sel.pieces if p.path == v.path] if v.whole else v.pieces
        for p in pieces:
            d = mod.defs.get(p.name) if mod is not None and p.name else None
            whole_function = (
                d is not None
                and d.kind in ("function", "method")
                and (d.start, d.end) == (p.start, p.end)
            )
            if p.priority == 1 and whole_function and (p.path, d.name) not in found:
                found[(p.path, d.name)] = p
    return list(found.values())


def _safe_reader(read: Callable[[str], str | None]) -> Callable[[str], str | None]:
    """`read`, with None for a binary or unreadable file."""

    def safe_read(path: str) -> str | None:
        try:
            return read(path)
        except (OSError, ValueError, UnicodeDecodeError):  # a binary or unreadable file
            return None

    return safe_read


def _select(
    read: Callable[[str], str | None],
    listed: list[str],
    count: Counter,
    failure: Failure,
    named: list[str],
    task_text: str,
) -> Selector:
    """The selector seeded from the failure and the task (the test files when nothing else)."""
    sel = Selector(read, listed, count)
    fallback = [p for p in listed if p.endswith(".py") and is_test_path(p)][:5]
    sel.seed(failure, named, task_text, fallback)
    if not any(not is_test_path(p.path) for p in sel.pieces):
        # Nothing points at the code under test: a small repository's modules, smallest first.
        sources = [p for p in listed if p.endswith(".py") and not is_test_path(p)]
        sizes = {p: len(read(p) or "") for p in sources[:50]}
        for path in sorted(sizes, key=sizes.__getitem__)[:10]:
            sel.note_file(path, "a module of the repository")
    return sel


WHOLE_DOCSTRING = 40  # with room left, shown code keeps docstrings up to this many lines


class _Packer:
    """Fits the selected pieces, whole files, outlines and cut files into the token budget,
    in that order, each step keeping only what still fits."""

    def __init__(
        self, sel: Selector, read: Callable[[str], str | None], count: Counter, budget: int
    ) -> None:
        self.sel = sel
        self.read = read
        self.count = count
        self.budget = budget
        self.order = sel.file_order
        self.chosen: dict[str, list[Piece]] = {p: [] for p in self.order}
        self.outlines: dict[str, int | None] = {}
        self.whole: set[str] = set()
        self.full_docs: set[str] = set()  # files whose shown code keeps its docstrings whole
        self._costs: dict[str, int] = {}

    def views(self, outlines: dict[str, int | None], whole: set[str]) -> list[FileView]:
        """The views of the files in order: `whole` ones whole, the rest with their chosen
        pieces and `outlines` entries (files with neither are left out)."""
        out = []
        for path in self.order:
            if path in whole:
                v = self.sel.whole(path)
            elif self.chosen[path] or path in outlines:
                docs = WHOLE_DOCSTRING if path in self.full_docs else DOC_LINES
                v = self.sel.view(path, self.chosen[path], outlines.get(path, 0), docs)
            else:
                continue
            if v is not None:
                out.append(v)
        return out

    def cost(self, views: list[FileView]) -> int:
        """The views' tokens (each rendering counted once)."""
        total = 0
        for v in views:
            text = v.render()
            if text not in self._costs:
                self._costs[text] = self.count(text)
            total += self._costs[text]
        return total

    def fits(self, outlines: dict[str, int | None], whole: set[str]) -> bool:
        return self.cost(self.views(outlines, whole)) <= self.budget

    def add_pieces(self) -> None:
        """Pieces by priority (within one, in the order found), each one that fits."""
        ranked = sorted(enumerate(self.sel.pieces), key=lambda ip: (ip[1].priority, ip[0]))
        for _, piece in ranked:
            self.chosen[piece.path].append(piece)
            if not self.fits(self.outlines, self.whole):
                self.chosen[piece.path].remove(piece)

    def add_whole_files(self) -> None:
        """Small files whole (then any whole-file answer is allowed for them); named files too."""
        for path in self.order:
            text = self.read(path)
            if text is None:
                continue
            if self._worth_whole(path, text):
                trial = self.whole | {path}
                if self.fits(self.outlines, trial):
                    self.whole = trial

    def add_whole_docstrings(self) -> None:
        """Docstrings of the shown code whole (up to WHOLE_DOCSTRING lines), file by file, where
        they still fit: cut after their first lines, the 1.5B model wrote the rest itself
        (inflection's `ordinal`: 1,024 tokens of invented doctests instead of the fix)."""
        for path in self.order:
            if path in self.whole or not self.chosen[path] or is_test_path(path):
                continue
            self.full_docs.add(path)
            if not self.fits(self.outlines, self.whole):
                self.full_docs.discard(path)

    def _worth_whole(self, path: str, text: str) -> bool:
        """A small file, or a Python file whole costs little more than its parts and outline."""
        small = len(text.splitlines()) <= SMALL_FILE_LINES
        if path.endswith(".py") and not small:
            parts = self.sel.view(path, self.chosen[path], None)
            small = parts is not None and self.count(text) <= 1.25 * self.count(parts.render())
        return small

    def add_outlines(self) -> None:
        """Outlines of the code under test shown in part (a test file's outline is noise)."""
        partial = [
            p
            for p in self.order
            if p not in self.whole and p.endswith(".py") and not is_test_path(p)
        ]
        for path in partial:
            mod = self.sel.index.module(path)
            if mod is None:
                continue
            n = len(mod.top) + sum(1 for d in mod.defs.values() if d.kind == "method")
            most = self._most_entries(path, n)
            if most > 0 or self.chosen[path]:
                self.outlines[path] = None if most >= n else most

    def _most_entries(self, path: str, n: int) -> int:
        """The most of `path`'s `n` outline entries that fit (a binary search)."""
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.fits({**self.outlines, path: mid}, self.whole):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def final_views(self) -> list[FileView]:
        """The views chosen, then non-Python files that do not fit whole: their head, cut with
        a marker, while room is left."""
        result = self.views(self.outlines, self.whole)
        shown = {v.path for v in result}
        for path in self.order:
            if path in shown or path.endswith(".py"):
                continue
            text = self.read(path)
            room = self.budget - self.cost(result)
            if text is None or room < 100:
                continue
            cut = _cut(text, int(len(text) * room / max(self.count(text), 1) * 0.8))
            reason = self.sel.file_reason.get(path, "")
            result.append(FileView(path, cut, reason + " (cut)", True, [], len(text.splitlines())))
        return result


def _listing(others: list[str], max_listing: int) -> str:
    if not others:
        return ""
    text = ", ".join(others[:max_listing])
    if len(others) > max_listing:
        text += f", ... ({len(others) - max_listing} more)"
    return f"Other files in the repository: {text}\n"


def _cut(text: str, room: int) -> str:
    """The head of `text` plus a marker saying how much is missing, within `room` characters."""
    lines = text.splitlines(keepends=True)
    reserve = len(CUT_MARKER.format(len(lines))) + 1
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) > room - reserve:
            break
        kept.append(line)
        size += len(line)
    return "".join(kept) + CUT_MARKER.format(len(lines) - len(kept)) + "\n"
