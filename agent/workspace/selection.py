"""Which code is relevant to a failure: the pieces of files to show, ranked by priority.

The failing tests with their fixtures and class setup (priority 0); what they call, the
traceback's definitions (deepest frame first), and definitions or files the task names
(1); what those call, one level down (2) and, with room left, one more (3). Definitions
are found through the AST index of :mod:`agent.workspace.codeindex`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import PurePosixPath

from agent.workspace.codeindex import Definition, RepoIndex
from agent.workspace.failure import IDENTIFIER, Failure, is_test_path
from agent.workspace.fileview import DOC_LINES, FileView, Piece, render_partial

_PASS_THROUGH = re.compile(r"\(\s*\*\w+\s*,\s*\*\*\w+\s*\)")  # f(*args, **kwargs)
SMALL_FILE_LINES = 80  # a file this short is shown whole when it fits
BIG_DEF_LINES = 80  # a definition longer than this is shown around its traceback line
WINDOW = 10  # lines shown either side of a traceback line outside any definition


class Selector:
    def __init__(
        self,
        read: Callable[[str], str | None],
        listed: list[str],
        count: Callable[[str], int],
    ) -> None:
        self.read = read
        self.listed = listed
        self.count = count
        self.index = RepoIndex(read, listed)
        self.pieces: list[Piece] = []
        self._keys: set[tuple[str, int, int]] = set()
        self.file_reason: dict[str, str] = {}
        self.file_order: list[str] = []

    # ---------------------------------------------------------------- candidates
    def add(self, piece: Piece) -> None:
        key = (piece.path, piece.start, piece.end)
        if key in self._keys:
            return
        self._keys.add(key)
        self.pieces.append(piece)
        self.note_file(piece.path, piece.reason)

    def note_file(self, path: str, reason: str) -> None:
        if path not in self.file_reason:
            self.file_reason[path] = reason
            self.file_order.append(path)

    def add_def(self, d: Definition, reason: str, priority: int, line: int | None = None) -> None:
        mod = self.index.module(d.path)
        if mod is None:
            return
        if d.kind == "method":
            owner = mod.defs.get(d.owner or "")
            if owner is not None:
                self._add_class_header(owner, reason, priority)
        if d.kind == "variable" and d.n_lines > 10:  # a data table: its outline line is enough
            self.note_file(d.path, reason)
            return
        if d.kind == "class" and d.n_lines > SMALL_FILE_LINES // 2:
            self._add_class_header(d, reason, priority)
            return
        if d.n_lines > BIG_DEF_LINES and d.kind != "variable":
            body = getattr(d.node, "body", [])
            head_end = body[0].lineno - 1 if body else d.start
            self.add(Piece(d.path, d.start, max(d.start, head_end), reason, priority, d.name))
            around = line if line is not None else d.start
            self.add(
                Piece(
                    d.path,
                    max(d.start, around - WINDOW),
                    min(d.end, around + WINDOW),
                    reason,
                    priority,
                )
            )
            return
        self.add(Piece(d.path, d.start, d.end, reason, priority, d.name))

    def _add_class_header(self, cls: Definition, reason: str, priority: int) -> None:
        node = cls.node
        assert isinstance(node, ast.ClassDef)
        first = node.body[0]
        end = first.lineno - 1
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
            and (first.end_lineno or first.lineno) - first.lineno < 3
        ):
            end = first.end_lineno or first.lineno  # a short docstring says what the class is
        self.add(Piece(cls.path, cls.start, max(cls.start, end), reason, priority, cls.name))

    # ---------------------------------------------------------------- seeds
    def seed(
        self,
        failure: Failure,
        named: list[str],
        task_text: str,
        fallback_tests: list[str],
    ) -> None:
        """Collect the pieces the failure and the task point at, and what those call."""
        tests = self._failing_tests(failure)
        level1: list[tuple[Definition, str]] = []
        for d in tests[:3]:
            self.add_def(d, "the failing test", 0)
            level1 += [(r, f"used by {d.name}") for r in self._test_support(d)]
            level1 += [(r, f"called by {d.name}") for r in self.index.references(d)]
        frames = [(p, ln) for p, ln in failure.frames if not is_test_path(p)]
        level1 += self._seed_traceback(frames)
        level1 += self._named_by_task(failure, named, task_text)
        if not tests and not frames and not level1:  # nothing to go on: the test files
            level1 += self._seed_test_files(fallback_tests)
        self._expand(level1)

    def _failing_tests(self, failure: Failure) -> list[Definition]:
        """The failing tests by node id, then the test functions of frames in test files."""
        tests: list[Definition] = []
        for path, qual in failure.tests:
            d = self.index.find(path, qual) or self.index.find(path, qual.rsplit(".", 1)[-1])
            if d is not None:
                tests.append(d)
        for path, line in failure.frames:  # frames inside test files: the test itself
            mod = self.index.module(path)
            d = mod.enclosing(line) if mod is not None and is_test_path(path) else None
            if d is not None and d.name.rsplit(".", 1)[-1].startswith("test") and d not in tests:
                tests.append(d)
        return tests

    def _seed_traceback(self, frames: list[tuple[str, int]]) -> list[tuple[Definition, str]]:
        """Add the traceback's definitions (or windows outside any); the ones to follow."""
        level1: list[tuple[Definition, str]] = []
        # Where it raised first, then the chain from the test inwards (the bug is often in a
        # caller of the function that raised).
        for path, line in frames[-1:] + frames[:-1]:
            mod = self.index.module(path)
            if mod is None:
                continue
            d = mod.enclosing(line)
            source = mod.lines[line - 1] if 0 < line <= len(mod.lines) else ""
            if d is None:
                start, end = max(1, line - WINDOW), min(len(mod.lines), line + WINDOW)
                self.add(Piece(path, start, end, "in the traceback", 1))
            elif _PASS_THROUGH.search(source):  # a decorator's wrapper: rarely the bug
                self.add_def(d, "in the traceback", 2, line)
            else:
                self.add_def(d, "in the traceback", 1, line)
                level1.append((d, "in the traceback"))
        return level1

    def _named_by_task(
        self, failure: Failure, named: list[str], task_text: str
    ) -> list[tuple[Definition, str]]:
        """Note the files the task names; the definitions in the involved files that the task
        or the assertion lines name."""
        level1: list[tuple[Definition, str]] = []
        for path in named:
            self.note_file(path, "named by the task")
        involved = list(dict.fromkeys([*self.file_order, *named]))
        task_names = set(IDENTIFIER.findall(task_text))
        for name in sorted(task_names):
            for d in self.index.defined_anywhere(name, involved):
                level1.append((d, "named by the task"))
        source = [p for p in involved if not is_test_path(p)]
        for name in failure.names:  # names in the assertion's E lines (pytest's "where ...")
            for d in self.index.defined_anywhere(name, source):
                level1.append((d, "in the assertion"))
        return level1

    def _seed_test_files(self, fallback_tests: list[str]) -> list[tuple[Definition, str]]:
        """Add the first tests of these test files; what they call, to follow."""
        level1: list[tuple[Definition, str]] = []
        for path in fallback_tests:
            self.note_file(path, "a test file")
            mod = self.index.module(path)
            for d in (mod.top if mod else [])[:3]:
                if d.kind != "variable":
                    self.add_def(d, "a test", 0)
                    level1 += [(r, f"called by {d.name}") for r in self.index.references(d)]
        return level1

    def _expand(self, level1: list[tuple[Definition, str]]) -> None:
        """Add `level1` (priority 1), what it calls (2) and, a level further, what those call
        (3, only where the budget leaves room)."""
        level2: list[tuple[Definition, str]] = []
        for d, reason in level1:
            self.add_def(d, reason, 1)
            if not is_test_path(d.path) or reason.startswith("used by"):
                level2 += [(r, f"called by {d.name}") for r in self.index.references(d)]
        seen = {d.key for d, _ in level1}
        level3: list[tuple[Definition, str]] = []
        for d, reason in level2:
            if d.kind == "variable" and d.n_lines > 5:
                continue
            self.add_def(d, reason, 2)
            if d.key not in seen and not is_test_path(d.path):
                seen.add(d.key)
                level3 += [(r, f"called by {d.name}") for r in self.index.references(d)]
        for d, reason in level3:
            if d.kind != "variable" and not is_test_path(d.path):
                self.add_def(d, reason, 3)

    def _test_support(self, test: Definition) -> list[Definition]:
        """The fixtures a test takes (from its file or a conftest.py above it) and its class's
        setup methods."""
        out: list[Definition] = []
        node = test.node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            params = [a.arg for a in node.args.args if a.arg not in ("self", "cls")]
            where = [test.path, *_conftests(test.path, self.index.listed)]
            for param in params:
                for path in where:
                    found = self.index.find(path, param)
                    if found is not None:
                        out.append(found)
                        break
        if test.owner:
            for setup in ("setUp", "setup_method", "setup", "setUpClass", "setup_class"):
                found = self.index.find(test.path, f"{test.owner}.{setup}")
                if found is not None:
                    out.append(found)
        return out

    # ---------------------------------------------------------------- views
    def view(
        self, path: str, pieces: list[Piece], outline: int | None, doc_lines: int = DOC_LINES
    ) -> FileView | None:
        """A file's view with these pieces and the first `outline` outline entries (all: None);
        docstrings longer than `doc_lines` cut."""
        mod = self.index.module(path)
        reason = self.file_reason.get(path, "")
        if mod is None:
            text = self.read(path)
            if text is None:
                return None
            return FileView(path, text, reason, True, [], len(text.splitlines()))
        text = render_partial(
            mod, pieces, outline, shorten_imports=is_test_path(path), doc_lines=doc_lines
        )
        return FileView(path, text, reason, False, pieces, len(mod.lines))

    def whole(self, path: str) -> FileView | None:
        text = self.read(path)
        if text is None:
            return None
        reason = self.file_reason.get(path, "")
        return FileView(path, text, reason, True, [], len(text.splitlines()))


def _conftests(path: str, listed: list[str]) -> list[str]:
    out = []
    parent = PurePosixPath(path).parent
    while True:
        candidate = str(parent / "conftest.py") if str(parent) != "." else "conftest.py"
        if candidate in listed:
            out.append(candidate)
        if str(parent) in (".", ""):
            return out
        parent = parent.parent
