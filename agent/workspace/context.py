"""What the model sees of a repository: the code that matters to the failure, within a token budget.

Chosen by relevance, not by file order (aider's repository map is the model):

1. the failing test functions (from the test results' node ids and the output), with the
   fixtures they take and the setup of their class;
2. the functions and classes they call and the ones in the traceback (deepest frame first),
   resolved through an AST index of the repository (:mod:`agent.workspace.codeindex`),
   definitions the task names, and files the task names;
3. what those call, one level down (and, with room left, one more);

each shown whole, with its path and line numbers, with the imports it needs. A small file
is shown whole; of a big one the rest appears as an outline (signatures, ``...`` bodies).
The budget is in tokens of the model in use (`count`), so what is shown always fits.

A file shown whole may be answered with a whole file; a file shown in part only with
SEARCH/REPLACE blocks or whole definitions (:mod:`agent.workspace.edits` enforces it).
Lines starting ``# fixloop:`` in a view are fixloop's notes (line numbers, what is
left out), never the file's text.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from agent.sandbox.result import ExecResult
from agent.workspace.codeindex import Definition, Module, RepoIndex, signature
from agent.workspace.edits import render_files

Counter = Callable[[str], int]

_TEST_REF = re.compile(r"(?P<path>[\w./-]+\.py)(?:::|:\d+|\"?, line \d+)")
_WORD = re.compile(r"[\w./-]+")
_IDENT = re.compile(r"\b[A-Za-z_]\w{2,}\b")
_NODE_ID = re.compile(r"^(?:FAILED|ERROR)\s+(?P<node>[\w./-]+\.py(?:::[\w\[\].,=+-]+)+)", re.M)
_FRAME = re.compile(
    r"^(?P<path>[^\s:\"]+\.py):(?P<line>\d+):(?: in (?P<func>[\w<>.]+))?"
    r"|File \"(?P<path2>[^\"]+\.py)\", line (?P<line2>\d+)",
    re.M,
)
_E_LINE = re.compile(r"^E\s+(.*)$", re.M)
NOTE = "# fixloop:"
_PASS_THROUGH = re.compile(r"\(\s*\*\w+\s*,\s*\*\*\w+\s*\)")  # f(*args, **kwargs)
CUT_MARKER = "[fixloop: {} more lines not shown; edit this file with SEARCH/REPLACE blocks only]"

SMALL_FILE_LINES = 80  # a file this short is shown whole when it fits
BIG_DEF_LINES = 80  # a definition longer than this is shown around its traceback line
WINDOW = 10  # lines shown either side of a traceback line outside any definition


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper estimate (code runs at about 3-4 characters per token)."""
    return math.ceil(len(text) / 3)


def is_test_path(path: str) -> bool:
    """pytest's conventions: test_*.py, *_test.py, conftest.py, or under a tests/ directory."""
    p = PurePosixPath(path)
    return (
        p.name.startswith("test_")
        or p.name.endswith("_test.py")
        or p.name == "conftest.py"
        or any(part in ("tests", "test") for part in p.parts[:-1])
    )


# ---------------------------------------------------------------- the failure
def _listed_path(raw: str, listed: Sequence[str], listed_set: set[str], prefix: str) -> str | None:
    """The repository file a path in test output means (relative to the run or absolute)."""
    path = raw.removeprefix("./")
    for candidate in (prefix + path, path):
        if candidate in listed_set:
            return candidate
    # An absolute path (a traceback from the scratch copy): the longest listed suffix.
    suffixes = [p for p in listed if path.endswith("/" + p)]
    return max(suffixes, key=len) if suffixes else None


def named_files(task_text: str, explicit: Iterable[str], listed: list[str]) -> list[str]:
    """Files named explicitly, then repository files whose path or module name the text mentions."""
    out = list(explicit)
    words = set(_WORD.findall(task_text))
    stems = {w.strip("./") for w in words}
    for path in listed:
        module = path.removesuffix(".py").replace("/", ".")
        name = PurePosixPath(path).name
        if path in stems or name in stems or (path.endswith(".py") and module in stems):
            out.append(path)
    return list(dict.fromkeys(out))


def failing_test_files(output: str, listed: list[str]) -> list[str]:
    """Repository files a test run's output points at (node ids, tracebacks), test files first."""
    listed_set = set(listed)
    hits: list[str] = []
    for m in _TEST_REF.finditer(output):
        path = _listed_path(m["path"], listed, listed_set, "")
        if path is not None:
            hits.append(path)
    hits = list(dict.fromkeys(hits))
    return sorted(hits, key=lambda p: not PurePosixPath(p).name.startswith("test"))


def local_imports(path: str, text: str, listed: list[str]) -> list[str]:
    """The repository modules a Python file imports (absolute, src-layout and relative)."""
    index = RepoIndex(lambda p: text if p == path else "", listed)
    mod = index.module(path) if path in index.listed else Module(path, text)
    if mod is None:
        return []
    found: list[str] = []
    for base, attr in mod.imports.values():
        for dotted in ([f"{base}.{attr}"] if attr else []) + [base]:
            target = index.module_path(dotted, near=path)
            if target is not None and target != path:
                found.append(target)
                break
    found += [t for b in mod.star if (t := index.module_path(b, near=path)) and t != path]
    return list(dict.fromkeys(found))


@dataclass
class Failure:
    """Where a failing test run points: the failing tests, the traceback frames, the names in
    its assertion lines."""

    tests: list[tuple[str, str]] = field(default_factory=list)  # (path, qualified name)
    frames: list[tuple[str, int]] = field(default_factory=list)  # (path, line), outer first
    names: list[str] = field(default_factory=list)


def parse_failure(
    node_ids: Iterable[str], texts: Iterable[str], listed: list[str], prefix: str = ""
) -> Failure:
    """The failing tests (pytest node ids, from the results or FAILED/ERROR lines) and the
    frames of the tracebacks in `texts`, as repository paths. `prefix` is where the test
    command ran, relative to the repository root ("" or "sub/dir/")."""
    listed_set = set(listed)
    texts = list(texts)
    failure = Failure()
    ids = list(node_ids) + [m["node"] for t in texts for m in _NODE_ID.finditer(t)]
    for node in ids:
        file, _, rest = node.partition("::")
        path = _listed_path(file, listed, listed_set, prefix)
        if path is None or not rest:
            continue
        qual = ".".join(part.split("[")[0] for part in rest.split("::"))
        if (path, qual) not in failure.tests:
            failure.tests.append((path, qual))
    for text in texts:
        for m in _FRAME.finditer(text):
            raw, line = (m["path"], m["line"]) if m["path"] else (m["path2"], m["line2"])
            path = _listed_path(raw, listed, listed_set, prefix)
            if path is not None and (path, int(line)) not in failure.frames:
                failure.frames.append((path, int(line)))
        for m in _E_LINE.finditer(text):
            failure.names += [n for n in _IDENT.findall(m[1]) if n not in failure.names]
    return failure


def describe_failure(
    result: ExecResult,
    read: Callable[[str], str | None],
    listed: list[str],
    prefix: str = "",
    max_tests: int = 3,
) -> str | None:
    """A failing pytest run in a few lines per test: its node id, pytest's ``E`` lines, and the
    traceback as ``path:line in function: source line``, innermost last (the code itself is in
    the context). None when the run has no per-test results to describe."""
    failing = [t for t in result.tests if t.status.value in ("failed", "error", "timeout")]
    if not failing:
        return None
    index = RepoIndex(read, listed)
    parts = [f"{len(failing)} of {len(result.tests)} tests failed."]
    for test in failing[:max_tests]:
        details = test.traceback or test.message or ""
        lines = [f"Test: {test.name}"]
        errors = [
            re.sub(r"^E\s+", "E   ", ln.rstrip())[:200]
            for ln in details.splitlines()
            if ln.startswith("E ")
        ]
        if len(errors) > 12:
            errors = [*errors[:6], "E   [...]", *errors[-5:]]
        frames = parse_failure([], [details], listed, prefix).frames
        if frames:
            lines.append("  traceback, innermost last:")
        for path, line in frames[-8:]:
            mod = index.module(path)
            where = mod.enclosing(line) if mod is not None else None
            source = mod.lines[line - 1].strip() if mod and 0 < line <= len(mod.lines) else ""
            name = f" in {where.name}" if where is not None else ""
            lines.append(f"    {path}:{line}{name}: {source[:160]}")
        if errors:
            lines += ["  " + e for e in errors]
        elif test.message:
            lines.append("  " + test.message.strip().splitlines()[0][:300])
        parts.append("\n".join(lines))
    if len(failing) > max_tests:
        parts.append(f"... and {len(failing) - max_tests} more failing tests.")
    summary = [ln for ln in result.stdout.text.splitlines() if _SUMMARY_LINE.search(ln)]
    if summary:
        parts.append("pytest: " + summary[-1].strip("= "))
    return "\n\n".join(parts)


_SUMMARY_LINE = re.compile(r"\d+ (?:passed|failed|errors?)\b.* in [\d.]+s")


# ---------------------------------------------------------------- selection
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


@dataclass
class Context:
    """The chosen views, in the order they are shown, and what they cost."""

    views: list[FileView]
    listing: str = ""
    tokens: int = 0
    budget: int = 0

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


class _Selector:
    def __init__(
        self,
        read: Callable[[str], str | None],
        listed: list[str],
        count: Counter,
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
        level1: list[tuple[Definition, str]] = []
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
        for d in tests[:3]:
            self.add_def(d, "the failing test", 0)
            level1 += [(r, f"used by {d.name}") for r in self._test_support(d)]
            level1 += [(r, f"called by {d.name}") for r in self.index.references(d)]
        frames = [(p, ln) for p, ln in failure.frames if not is_test_path(p)]
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
        for path in named:
            self.note_file(path, "named by the task")
        involved = list(dict.fromkeys([*self.file_order, *named]))
        task_names = set(_IDENT.findall(task_text))
        for name in sorted(task_names):
            for d in self.index.defined_anywhere(name, involved):
                level1.append((d, "named by the task"))
        source = [p for p in involved if not is_test_path(p)]
        for name in failure.names:  # names in the assertion's E lines (pytest's "where ...")
            for d in self.index.defined_anywhere(name, source):
                level1.append((d, "in the assertion"))
        if not tests and not frames and not level1:  # nothing to go on: the test files
            for path in fallback_tests:
                self.note_file(path, "a test file")
                mod = self.index.module(path)
                for d in (mod.top if mod else [])[:3]:
                    if d.kind != "variable":
                        self.add_def(d, "a test", 0)
                        level1 += [(r, f"called by {d.name}") for r in self.index.references(d)]
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
        for d, reason in level3:  # a level further, only where the budget leaves room
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
    def view(self, path: str, pieces: list[Piece], outline: int | None) -> FileView | None:
        """A file's view with these pieces and the first `outline` outline entries (all: None)."""
        mod = self.index.module(path)
        reason = self.file_reason.get(path, "")
        if mod is None:
            text = self.read(path)
            if text is None:
                return None
            return FileView(path, text, reason, True, [], len(text.splitlines()))
        text = render_partial(mod, pieces, outline, shorten_imports=is_test_path(path))
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


DOC_LINES = 3  # a longer docstring of shown code is cut to its first lines


def _long_docstrings(mod: Module, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Line ranges to leave out: all but the first lines of long docstrings in shown code."""
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
        if last - first + 1 <= DOC_LINES:
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
    mod: Module, pieces: list[Piece], outline: int | None, shorten_imports: bool = False
) -> str:
    """The pieces of a file whole (with `# fixloop: lines a-b` notes; long docstrings cut to
    their first lines), the imports they need, and up to `outline` outline entries
    (signatures with ``...`` bodies) for the rest. `shorten_imports`: a long import list
    shows only the names used (for test files, which are not edited)."""
    code = [(p.start, p.end) for p in pieces]
    whole_ranges = _merge(code + _needed_imports(mod, code))
    all_entries = _outline_entries(mod, whole_ranges)
    entries = all_entries
    if outline is not None:
        entries = entries[:outline] if outline > 0 else []
    holes = _long_docstrings(mod, whole_ranges)
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

    def safe_read(path: str) -> str | None:
        try:
            return read(path)
        except (OSError, ValueError, UnicodeDecodeError):  # a binary or unreadable file
            return None

    sel = _Selector(safe_read, listed, count)
    fallback = [p for p in listed if p.endswith(".py") and is_test_path(p)][:5]
    sel.seed(failure, named, task_text, fallback)
    if not any(not is_test_path(p.path) for p in sel.pieces):
        # Nothing points at the code under test: a small repository's modules, smallest first.
        sources = [p for p in listed if p.endswith(".py") and not is_test_path(p)]
        sizes = {p: len(safe_read(p) or "") for p in sources[:50]}
        for path in sorted(sizes, key=sizes.__getitem__)[:10]:
            sel.note_file(path, "a module of the repository")
    order = sel.file_order
    # Pieces by priority; within one, in the order found.
    ranked = sorted(enumerate(sel.pieces), key=lambda ip: (ip[1].priority, ip[0]))
    chosen: dict[str, list[Piece]] = {p: [] for p in order}
    cost_cache: dict[str, int] = {}

    def views(outlines: dict[str, int | None], whole: set[str]) -> list[FileView]:
        out = []
        for path in order:
            if path in whole:
                v = sel.whole(path)
            elif chosen[path] or path in outlines:
                v = sel.view(path, chosen[path], outlines.get(path, 0))
            else:
                continue
            if v is not None:
                out.append(v)
        return out

    def cost(vs: list[FileView]) -> int:
        total = 0
        for v in vs:
            text = v.render()
            if text not in cost_cache:
                cost_cache[text] = count(text)
            total += cost_cache[text]
        return total

    outlines: dict[str, int | None] = {}
    whole: set[str] = set()
    for _, piece in ranked:
        chosen[piece.path].append(piece)
        if cost(views(outlines, whole)) > budget_tokens:
            chosen[piece.path].remove(piece)
    # Small files whole (then any whole-file answer is allowed for them); named files too.
    for path in order:
        text = safe_read(path)
        if text is None:
            continue
        small = len(text.splitlines()) <= SMALL_FILE_LINES
        if path.endswith(".py") and not small:
            # Worth showing whole when that costs little more than its parts and outline.
            parts = sel.view(path, chosen[path], None)
            small = parts is not None and count(text) <= 1.25 * count(parts.render())
        if small:
            trial = whole | {path}
            if cost(views(outlines, trial)) <= budget_tokens:
                whole = trial
    # Outlines of the code under test shown in part (a test file's outline is noise).
    partial = [p for p in order if p not in whole and p.endswith(".py") and not is_test_path(p)]
    for path in partial:
        mod = sel.index.module(path)
        if mod is None:
            continue
        n = len(mod.top) + sum(1 for d in mod.defs.values() if d.kind == "method")
        lo, hi = 0, n
        while lo < hi:  # the most entries that fit
            mid = (lo + hi + 1) // 2
            if cost(views({**outlines, path: mid}, whole)) <= budget_tokens:
                lo = mid
            else:
                hi = mid - 1
        if lo > 0 or chosen[path]:
            outlines[path] = None if lo >= n else lo
    # Non-Python files that do not fit whole: their head, cut with a marker.
    result = views(outlines, whole)
    shown = {v.path for v in result}
    for path in order:
        if path in shown or path.endswith(".py"):
            continue
        text = safe_read(path)
        room = budget_tokens - cost(result)
        if text is None or room < 100:
            continue
        cut = _cut(text, int(len(text) * room / max(count(text), 1) * 0.8))
        reason = sel.file_reason.get(path, "")
        result.append(FileView(path, cut, reason + " (cut)", True, [], len(text.splitlines())))
    spent = cost(result)
    listing = _listing([p for p in listed if p not in {v.path for v in result}], max_listing)
    if listing and spent + count(listing) <= budget_tokens:
        spent += count(listing)
    else:
        listing = ""
    return Context(result, listing, spent, budget_tokens)


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
