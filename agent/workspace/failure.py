"""Where a task and its failing test run point: the failing tests, the traceback frames,
the names in the assertion lines, and the repository files named or imported.

What :mod:`agent.workspace.context` starts its choice of code from; :func:`describe_failure`
is the short summary of a failing run shown to the model beside that code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from agent.sandbox.result import ExecResult
from agent.workspace.codeindex import Module, RepoIndex

_TEST_REF = re.compile(r"(?P<path>[\w./-]+\.py)(?:::|:\d+|\"?, line \d+)")
_WORD = re.compile(r"[\w./-]+")
IDENTIFIER = re.compile(r"\b[A-Za-z_]\w{2,}\b")
_NODE_ID = re.compile(r"^(?:FAILED|ERROR)\s+(?P<node>[\w./-]+\.py(?:::[\w\[\].,=+-]+)+)", re.M)
_FRAME = re.compile(
    r"^(?P<path>[^\s:\"]+\.py):(?P<line>\d+):(?: in (?P<func>[\w<>.]+))?"
    r"|File \"(?P<path2>[^\"]+\.py)\", line (?P<line2>\d+)",
    re.M,
)
_E_LINE = re.compile(r"^E\s+(.*)$", re.M)
_LOCAL = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s+= (?P<value>.*)$")  # pytest --showlocals
LOCAL_CHARS = 80  # of one value
LOCALS_CHARS = 320  # of a frame's line of locals
_OPAQUE = ("<function ", "<class ", "<module ", "<built-in ", "<bound method ")


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
            failure.names += [n for n in IDENTIFIER.findall(m[1]) if n not in failure.names]
    return failure


def frame_locals(text: str) -> list[tuple[str, int, list[str]]]:
    """Each traceback frame's local variables in a pytest report run with ``--showlocals``:
    (path as printed, line, ``name = value`` strings), outer frame first. A frame's locals are
    printed after its current (``>``) line and before its ``path:line:`` location line; the
    arguments line above the ``>`` line repeats some of them. Functions, classes and modules
    are left out (their reprs say nothing a model can use)."""
    out: list[tuple[str, int, list[str]]] = []
    pending: list[str] = []
    for line in text.splitlines():
        if line.startswith(">"):
            pending = []  # what came before was the arguments line
            continue
        local = _LOCAL.match(line)
        if local:
            value = local["value"]
            if value.startswith(_OPAQUE):
                continue
            if len(value) > LOCAL_CHARS:
                value = value[: LOCAL_CHARS - 3] + "..."
            pending.append(f"{local['name']} = {value}")
            continue
        frame = _FRAME.match(line)
        if frame and frame["path"]:
            out.append((frame["path"], int(frame["line"]), pending))
            pending = []
    return out


def _locals_line(names: list[str]) -> str:
    """One line of a frame's locals, cut to LOCALS_CHARS at a variable's end."""
    shown: list[str] = []
    used = 0
    for item in names:
        if used + len(item) > LOCALS_CHARS:
            shown.append("...")
            break
        shown.append(item)
        used += len(item) + 2
    return ", ".join(shown)


def describe_failure(
    result: ExecResult,
    read: Callable[[str], str | None],
    listed: list[str],
    prefix: str = "",
    max_tests: int = 3,
) -> str | None:
    """A failing pytest run in a few lines per test: its node id, pytest's ``E`` lines, and the
    traceback as ``path:line in function: source line``, innermost last, each frame with its
    local variables where pytest printed them (the code itself is in the context). None when
    the run has no per-test results to describe."""
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
        listed_set = set(listed)
        local_vars = {
            (path, line): names
            for raw, line, names in frame_locals(details)
            if names and (path := _listed_path(raw, listed, listed_set, prefix)) is not None
        }
        if frames:
            lines.append("  traceback, innermost last:")
        for path, line in frames[-8:]:
            mod = index.module(path)
            where = mod.enclosing(line) if mod is not None else None
            source = mod.lines[line - 1].strip() if mod and 0 < line <= len(mod.lines) else ""
            name = f" in {where.name}" if where is not None else ""
            lines.append(f"    {path}:{line}{name}: {source[:160]}")
            if (path, line) in local_vars:
                lines.append(f"      locals: {_locals_line(local_vars[(path, line)])}")
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
