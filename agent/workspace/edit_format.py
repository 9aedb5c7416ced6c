"""The reply format for file edits: reading a model's reply into edits, writing files in it.

Two formats are accepted in a reply, mixed freely:

* a whole file: a fenced block preceded by a line holding the file's path
  (plain, in backticks or bold, or after ``File:``), or with the path in the
  fence's info string (```` ```python src/mod.py ````);
* aider-style search/replace blocks, inside a fence, with the path on the line
  before the fence (or on the first line inside it)::

      src/mod.py
      ```python
      <<<<<<< SEARCH
      exact lines from the file
      =======
      the new lines
      >>>>>>> REPLACE
      ```

:func:`render_files` writes whole files in the format :func:`parse_edits` reads back.
Applying the edits is :mod:`agent.workspace.edits`. Every problem raises
:class:`agent.environment.FormatProblem` with a message written for the model: it is fed
back as the next turn.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from agent.environment import FormatProblem
from agent.events import FileEdit

# Small models mix up aider's markers with git's conflict markers (`<<<<<<< HEAD`, `>>>>>>>
# main`, seen from the 1.5B model on a real repository): any one word after the arrows counts.
SEARCH_MARK = re.compile(r"^\s*<{5,9} ?(?:SEARCH|HEAD|ORIGINAL|OLD|CURRENT)?\s*$", re.I)
DIVIDER_MARK = re.compile(r"^\s*={5,9}\s*$")
REPLACE_MARK = re.compile(r"^\s*>{5,9} ?(?:[\w./-]+)?\s*$")
_FENCE_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_PATH_LINE = re.compile(
    r"^\s*(?:#+\s*)?(?:(?:file|path|filename)\s*:\s*)?[*_`'\"]*(?P<path>[\w./\\-]+)[*_`'\"]*:?\s*$",
    re.IGNORECASE,
)
_LANGS = {
    "python",
    "py",
    "python3",
    "text",
    "txt",
    "diff",
    "patch",
    "toml",
    "yaml",
    "yml",
    "json",
    "ini",
    "cfg",
    "sh",
    "bash",
    "shell",
    "console",
    "markdown",
    "md",
    "rst",
    "javascript",
    "js",
    "typescript",
    "ts",
    "c",
    "cpp",
    "go",
    "rust",
    "java",
    "html",
    "css",
    "sql",
    "makefile",
}
_LANG_BY_SUFFIX = {
    ".py": "python",
    ".toml": "toml",
    ".json": "json",
    ".md": "markdown",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".sh": "bash",
    ".cfg": "ini",
    ".ini": "ini",
}

# Files without an extension that are still files (anything else needs an extension: a line
# like "search/replace" above a block is prose, not a path).
_BARE_NAMES = frozenset({"Makefile", "Dockerfile", "Containerfile", "LICENSE", "Procfile"})
# Paths from format examples that small models copy verbatim: read as "no path given".
EXAMPLE_PATHS = frozenset({"path/to/file.py", "pkg/module.py", "path/to/file"})


def format_help(path: str | None = None, partial: bool = False) -> str:
    """How to write edits, in words: a template with placeholders gets copied by small models.

    `partial`: some file was shown only in part, so whole files are not offered.
    """
    name = f"`{path}`" if path else "the file's path (relative to the repository root)"
    blocks = (
        f"Answer format: a line with {name}, then a ```python code block with SEARCH/REPLACE "
        "blocks: a line <<<<<<< SEARCH, the current lines to change copied exactly from the "
        "code above (a few lines, enough to be unique; not the `# fixloop:` notes), a line "
        "=======, the new lines, a line >>>>>>> REPLACE. To rewrite a whole function, you may "
        "instead put only its complete new definition (from its def line to its last line) "
        "in the code block."
    )
    if partial:
        return blocks + " Never send a whole file you were shown only in part."
    return blocks + " A file shown whole may also be sent complete, every line of it."


def focus_help(path: str | None, focus: Sequence[str]) -> str:
    """The answer format for a failure that points at functions (shown alone): find the bug
    from the values first, then send the corrected function whole.

    Measured on the real-bug benchmark (docs/BENCHMARKS.md, issue 20): asked for SEARCH/REPLACE
    blocks beside the files' outlines, the 1.5B model copied the shown code back unchanged;
    shown the function alone and asked this, its samples fixed bugs.
    """
    where = f"a line with `{path}`" if path else "a line with the function's file path"
    which = f"`{focus[0]}`" if len(focus) == 1 else "the function you fix"
    return (
        "Find the bug: compare what the test expects with what the code does, using the "
        f"values above, in a sentence or two. Then reply with {where} and a ```python code "
        f"block holding the corrected {which}, complete, from its def line to its last line."
    )


FORMAT_HELP = format_help()


@dataclass
class _Fence:
    info: str
    body: str
    before: str  # the nearest non-blank line before the fence, "" if none


def _fences(text: str) -> list[_Fence]:
    """Fenced blocks in reading order (CommonMark rules: a closing fence at least as long)."""
    lines = text.splitlines()
    fences: list[_Fence] = []
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        before = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                break
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        content = "\n".join(body) + "\n" if body else ""
        fences.append(_Fence(info=m["info"].strip(), body=content, before=before))
        i = j + 1
    return fences


def _path_candidate(line: str) -> str | None:
    m = _PATH_LINE.match(line)
    if not m:
        return None
    path = m["path"].replace("\\", "/").rstrip(":")
    looks_like_path = (
        bool(re.search(r"\.[A-Za-z][A-Za-z0-9]{0,7}$", path))
        or PurePosixPath(path).name in _BARE_NAMES
        # Paths that could escape are read as paths, so that they are refused by name.
        or path.startswith(("/", ".git/", "../"))
        or "/../" in path
    )
    return path if looks_like_path else None


_MENTION = re.compile(r"(?<![\w/.-])([\w-]+(?:/[\w.-]+)*\.[A-Za-z][A-Za-z0-9]{0,7})(?![\w/])")


def _path_mentioned(line: str) -> str | None:
    """The one file path a sentence names ("Here is the fixed `pkg/mod.py`:"), if exactly one."""
    found = {m.rstrip(".") for m in _MENTION.findall(line)}
    found = {m for m in found if not re.fullmatch(r"(e\.g|i\.e|etc)", m)}
    return found.pop() if len(found) == 1 else None


def _path_in_info(info: str) -> str | None:
    for token in info.split():
        token = token.removeprefix("path=").removeprefix("file=").strip("'\"")
        if token.lower() in _LANGS:
            continue
        candidate = _path_candidate(token)
        if candidate:
            return candidate
    return None


def safe_relpath(path: str) -> str:
    """A normalized path relative to the workspace root; FormatProblem if it could escape it."""
    raw = path.strip().replace("\\", "/")
    if not raw:
        raise FormatProblem("An edit has an empty file path. " + FORMAT_HELP)
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise FormatProblem(
            f"The path {path!r} is absolute. Use a path relative to the repository root, "
            "e.g. pkg/module.py."
        )
    parts = [p for p in PurePosixPath(raw).parts if p not in ("", ".")]
    if ".." in parts:
        raise FormatProblem(
            f"The path {path!r} points outside the repository ('..' is not allowed). "
            "Edit only files inside the repository, with paths relative to its root."
        )
    if parts and parts[0] == ".git":
        raise FormatProblem(f"The path {path!r} is inside .git; fixloop never edits git's files.")
    if not parts:
        raise FormatProblem(f"The path {path!r} names no file. " + FORMAT_HELP)
    return "/".join(parts)


def _search_replace_blocks(
    body: str, path: str | None, where: str, default_path: str | None = None
) -> list[FileEdit]:
    lines = body.splitlines(keepends=True)
    edits: list[FileEdit] = []
    i = 0
    while i < len(lines):
        if not SEARCH_MARK.match(lines[i]):
            candidate = _path_candidate(lines[i]) if lines[i].strip() else None
            if candidate and candidate not in EXAMPLE_PATHS:
                path = candidate
            i += 1
            continue
        search: list[str] = []
        j = i + 1
        while j < len(lines) and not DIVIDER_MARK.match(lines[j]):
            if SEARCH_MARK.match(lines[j]) or REPLACE_MARK.match(lines[j]):
                break
            search.append(lines[j])
            j += 1
        if j >= len(lines) or not DIVIDER_MARK.match(lines[j]):
            raise FormatProblem(
                f"A SEARCH block {where} has no ======= line. Each block is: <<<<<<< SEARCH, "
                "the exact old lines, =======, the new lines, >>>>>>> REPLACE."
            )
        replace: list[str] = []
        k = j + 1
        while k < len(lines) and not REPLACE_MARK.match(lines[k]):
            if SEARCH_MARK.match(lines[k]):
                break
            replace.append(lines[k])
            k += 1
        if k >= len(lines) or not REPLACE_MARK.match(lines[k]):
            raise FormatProblem(
                f"A SEARCH block {where} does not end with >>>>>>> REPLACE. Close every block."
            )
        path = path or default_path
        if path is None:
            raise FormatProblem(
                f"A SEARCH/REPLACE block {where} has no file path. Put the path of the file "
                "on the line just before the ``` fence."
            )
        edits.append(
            FileEdit(path=safe_relpath(path), search="".join(search), replace="".join(replace))
        )
        i = k + 1
    return edits


def _without_lone_divider(body: str) -> str:
    """A block that is only the replacement half of a SEARCH/REPLACE block (``=======``, new
    lines, optionally ``>>>>>>> REPLACE``), as the new lines alone; other bodies unchanged.

    The 1.5B model answers a refused whole file this way, the new definition after the
    divider; read as sent after the path, the definition replaces the one of that name.
    """
    lines = body.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if start is None or not DIVIDER_MARK.match(lines[start]):
        return body
    rest = lines[start + 1 :]
    if any(SEARCH_MARK.match(ln) or DIVIDER_MARK.match(ln) for ln in rest):
        return body
    while rest and not rest[-1].strip():
        rest.pop()
    if rest and REPLACE_MARK.match(rest[-1]):
        rest.pop()
    return "".join(rest)


def parse_edits(reply: str, default_path: str | None = None) -> list[FileEdit]:
    """Every edit in a model reply, in order. FormatProblem when there is none or one is invalid.

    `default_path` names the file an unlabelled SEARCH/REPLACE block or a lone, unlabelled
    whole-file block is taken to edit (the task's single editable file); without it such a
    block is a format problem. A path copied from the format example counts as no path.
    """
    fences = _fences(reply)
    edits: list[FileEdit] = []
    unlabelled: list[_Fence] = []
    for n, fence in enumerate(fences, start=1):
        path = (
            _path_in_info(fence.info)
            or _path_candidate(fence.before)
            or _path_mentioned(fence.before)
        )
        if path in EXAMPLE_PATHS:
            path = None
        where = f"in code block {n}" + (f" ({path})" if path else "")
        body = _without_lone_divider(fence.body)
        if body != fence.body and path is not None:
            edits.append(FileEdit(path=safe_relpath(path), content=body))
        elif any(SEARCH_MARK.match(ln) for ln in fence.body.splitlines()):
            edits.extend(_search_replace_blocks(fence.body, path, where, default_path))
        elif path is not None:
            edits.append(FileEdit(path=safe_relpath(path), content=fence.body))
        elif fence.body.strip():
            unlabelled.append(fence)
    if not fences and any(SEARCH_MARK.match(ln) for ln in reply.splitlines()):
        edits.extend(_search_replace_blocks(reply, None, "outside a code block", default_path))
    if unlabelled:
        if default_path is not None and not edits and len(unlabelled) == 1:
            edits.append(FileEdit(path=safe_relpath(default_path), content=unlabelled[0].body))
        elif not edits:
            raise FormatProblem(
                "Your code block has no file path, so fixloop cannot tell which file it "
                "replaces. " + FORMAT_HELP
            )
    if not edits:
        raise FormatProblem("Your reply contains no file edits. " + FORMAT_HELP)
    return edits


def render_files(files: Mapping[str, str]) -> str:
    """Whole files in the reply format `parse_edits` reads back exactly (the logged proposal)."""
    out: list[str] = []
    for path, content in files.items():
        longest = max((len(m) for m in re.findall(r"`{3,}", content)), default=2)
        fence = "`" * max(3, longest + 1)
        lang = _LANG_BY_SUFFIX.get(PurePosixPath(path).suffix, "")
        body = content if content.endswith("\n") or not content else content + "\n"
        out.append(f"{path}\n{fence}{lang}\n{body}{fence}\n")
    return "\n".join(out)
