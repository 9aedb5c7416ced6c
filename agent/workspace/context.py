"""A small, bounded context for a workspace task: which files the model sees, within a budget.

In order, until the character budget is spent: the files the task names (in
`Task.files` or mentioned in its text), the test files in the failing test
output, then the local modules those import. A file that does not fit is cut
with a marker (so the model knows to send search/replace blocks for it, never
a whole truncated file). A short listing of the other files comes first.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from agent.workspace.edits import render_files

_TEST_REF = re.compile(r"(?P<path>[\w./-]+\.py)(?:::|:\d+|\"?, line \d+)")
_WORD = re.compile(r"[\w./-]+")


@dataclass
class ContextFile:
    path: str
    text: str
    reason: str  # "named by the task", "failing test", "imported by <path>"
    truncated: bool = False


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
        path = m["path"].removeprefix("./")
        if path in listed_set:
            hits.append(path)
            continue
        # An absolute path (a traceback from the scratch copy): the longest listed suffix.
        suffixes = [p for p in listed if path.endswith("/" + p)]
        if suffixes:
            hits.append(max(suffixes, key=len))
    hits = list(dict.fromkeys(hits))
    return sorted(hits, key=lambda p: not PurePosixPath(p).name.startswith("test"))


def local_imports(path: str, text: str, listed: list[str]) -> list[str]:
    """The repository modules a Python file imports (absolute, src-layout and relative)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    listed_set = set(listed)
    package = PurePosixPath(path).parent
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.parent
                prefix = ".".join(p for p in anchor.parts if p)
                base = ".".join(p for p in (prefix, base) if p)
            names.append(base)
            names.extend(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    found: list[str] = []
    for name in names:
        rel = name.replace(".", "/")
        for root in ("", "src/", "lib/", f"{package}/" if str(package) != "." else ""):
            for candidate in (f"{root}{rel}.py", f"{root}{rel}/__init__.py"):
                if candidate in listed_set and candidate != path:
                    found.append(candidate)
    return list(dict.fromkeys(found))


def select_files(
    read: Callable[[str], str | None],
    listed: list[str],
    named: list[str],
    failing: list[str],
    budget_chars: int,
) -> list[ContextFile]:
    """The context files in priority order, cut to fit `budget_chars` in total."""
    queue: list[tuple[str, str]] = [(p, "named by the task") for p in named]
    queue += [(p, "failing test") for p in failing]
    chosen: list[ContextFile] = []
    seen: set[str] = set()
    spent = 0
    i = 0
    while i < len(queue):
        path, reason = queue[i]
        i += 1
        if path in seen:
            continue
        seen.add(path)
        text = read(path)
        if text is None:
            continue
        if path.endswith(".py"):
            queue += [(p, f"imported by {path}") for p in local_imports(path, text, listed)]
        room = budget_chars - spent
        if room < 200:
            break
        if len(text) > room:
            chosen.append(ContextFile(path, _cut(text, room), reason, truncated=True))
            spent = budget_chars
            continue
        chosen.append(ContextFile(path, text, reason))
        spent += len(text)
    return chosen


def _cut(text: str, room: int) -> str:
    """The head of `text` plus a marker saying how much is missing, within `room` characters."""
    lines = text.splitlines(keepends=True)
    marker = (
        "# ... [fixloop: {} more lines not shown; edit this file with SEARCH/REPLACE blocks only]\n"
    )
    reserve = len(marker.format(len(lines)))
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) > room - reserve:
            break
        kept.append(line)
        size += len(line)
    return "".join(kept) + marker.format(len(lines) - len(kept))


def render_context(files: list[ContextFile], listed: list[str], max_listing: int = 40) -> str:
    """The repository listing and the chosen files, in the format edits are sent back in."""
    shown = {f.path for f in files}
    others = [p for p in listed if p not in shown]
    listing = ", ".join(others[:max_listing])
    if len(others) > max_listing:
        listing += f", ... ({len(others) - max_listing} more)"
    parts = [f"Other files in the repository: {listing}\n" if others else ""]
    for f in files:
        note = " (truncated)" if f.truncated else ""
        parts.append(f"# {f.reason}{note}:\n" + render_files({f.path: f.text}))
    return "\n".join(p for p in parts if p)
