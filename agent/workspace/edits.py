"""The model's proposed file edits: parsing, validation, application and rendering.

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

A "whole file" for a Python file that redefines some of its functions is spliced into it
(:mod:`agent.workspace.partial`): sending one complete function replaces that function.
With `whole_seen` (the files the model was shown whole), :func:`apply_edits` refuses a
whole-file block that would replace a file the model saw only in part, or delete most of
one it saw whole (the truncation marker copied back as the file, say): small models do
both.

Every problem raises :class:`agent.environment.FormatProblem` with a message
written for the model: it is fed back as the next turn.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from agent.environment import FormatProblem
from agent.events import FileEdit
from agent.workspace.partial import splice_partial

SEARCH_MARK = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
DIVIDER_MARK = re.compile(r"^\s*={5,9}\s*$")
REPLACE_MARK = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")
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
        if any(SEARCH_MARK.match(ln) for ln in fence.body.splitlines()):
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


def _replace_once(text: str, search: str, replace: str, path: str) -> str:
    count = text.count(search)
    if count == 1:
        return text.replace(search, replace, 1)
    if count > 1:
        raise FormatProblem(
            f"The SEARCH text for {path} occurs {count} times in the file. Include more "
            "surrounding lines so that it matches exactly one place."
        )
    # Forgive trailing whitespace differences (a common small-model slip), nothing else.
    text_lines = text.splitlines(keepends=True)
    want = [ln.rstrip() for ln in search.splitlines()]
    hits = [
        i
        for i in range(len(text_lines) - len(want) + 1)
        if [ln.rstrip() for ln in text_lines[i : i + len(want)]] == want
    ]
    if len(hits) == 1:
        i = hits[0]
        new = replace if replace.endswith("\n") or not replace else replace + "\n"
        return "".join(text_lines[:i]) + new + "".join(text_lines[i + len(want) :])
    first = search.strip().splitlines()[0] if search.strip() else ""
    stub = next((ln for ln in search.splitlines() if re.search(r":\s*\.\.\.\s*$", ln)), None)
    hint = (
        f" {stub.strip()!r} is a line of fixloop's outline (a signature with a ... body), not "
        "the file's text: copy lines from the code shown whole."
        if stub
        else ""
    )
    raise FormatProblem(
        f"The SEARCH text for {path} does not match the file. SEARCH must copy the existing "
        f"lines exactly, including indentation (its first line was {first!r}).{hint} "
        "Or send the complete new definition of the function you change instead."
    )


Reader = Callable[[str], str | None]
NOTE_LINE = re.compile(
    r"^[ \t]*# fixloop: (?:lines \d+-\d+.*|.* has \d+ lines; .*|\d+ more .*)\n?", re.M
)
_MARKER = re.compile(r"\[fixloop: \d+ more lines not shown[^\]]*\]")
SEND_INSTEAD = (
    "Send SEARCH/REPLACE blocks for the lines to change, or only the complete new definition "
    "of each function you change (from its def line to its last line) after the file's path."
)


def strip_notes(edits: list[FileEdit]) -> list[FileEdit]:
    """The edits without fixloop's ``# fixloop: lines a-b`` notes copied from the context."""

    def clean(text: str | None) -> str | None:
        return NOTE_LINE.sub("", text) if text else text

    return [
        e.model_copy(
            update={
                "content": clean(e.content),
                "search": clean(e.search),
                "replace": clean(e.replace),
            }
        )
        for e in edits
    ]


def check_whole_file(
    path: str, current: str, content: str, *, spliced: bool, seen_whole: bool
) -> None:
    """Refuse a whole-file block that would destroy code (FormatProblem, saying why).

    Refused (unless it only replaces definitions by name, `spliced`): a whole file for a
    file the model was not shown whole; a whole file that keeps less than half of a file of
    20 lines or more. (The truncation marker sent as a file is refused before this.)
    """
    if spliced:
        return
    old = [ln for ln in current.splitlines() if ln.strip()]
    new = [ln for ln in content.splitlines() if ln.strip()]
    if len(old) <= 3:  # an empty __init__.py or a one-liner
        return
    if not seen_whole:
        raise FormatProblem(
            f"You were not shown all of {path} ({len(current.splitlines())} lines), so a code "
            "block after its path, which replaces the whole file, would delete code you have "
            "not seen. " + SEND_INSTEAD
        )
    if len(old) >= 20 and len(new) < len(old) / 2:
        raise FormatProblem(
            f"Your code block for {path} has {len(new)} lines of code but the file has "
            f"{len(old)}: as the whole file it would delete most of it. " + SEND_INSTEAD
        )


_PLACEHOLDER = re.compile(r"<[^<>\n]{1,80}>|\.\.\.|…|#\s*\.\.\..*")


def apply_edits(
    edits: list[FileEdit],
    read: Reader,
    splice: bool = True,
    candidates: Sequence[str] = (),
    whole_seen: Collection[str] | None = None,
) -> dict[str, str]:
    """The new content of every file the edits change. `read(path)` gives the current text.

    Blocks for the same file apply in order, each to the result of the previous one.
    An empty SEARCH creates a file that does not exist yet. A "whole" Python file that
    leaves out top-level definitions is spliced into the current one (see
    :mod:`agent.workspace.partial`). A SEARCH block for a file that does not exist is
    moved to the one file among `candidates` (the files the model was shown) that holds
    its SEARCH text, if there is exactly one. With `whole_seen` (the files the model saw
    whole), a whole-file block that would destroy code is refused (:func:`check_whole_file`).
    """
    files: dict[str, str] = {}
    for edit in edits:
        path = safe_relpath(edit.path)
        current = files[path] if path in files else read(path)
        if current is None and edit.search and edit.search.strip():
            holders = [c for c in candidates if edit.search in (files.get(c) or read(c) or "")]
            if len(holders) == 1:
                path = holders[0]
                current = files[path] if path in files else read(path)
        if edit.content is not None:
            guarded = whole_seen is not None and current is not None
            if guarded and (marker := _MARKER.search(edit.content)):
                raise FormatProblem(
                    f"Your code block for {path} holds fixloop's note {marker.group(0)!r}, which "
                    "marks lines that were not shown: sent as the file, it would delete them. "
                    + SEND_INSTEAD
                )
            if _PLACEHOLDER.fullmatch(edit.content.strip()):
                instead = (
                    SEND_INSTEAD
                    if guarded and path not in (whole_seen or ())
                    else "Send the real content of the file."
                )
                raise FormatProblem(
                    f"The block for {path} holds a placeholder ({edit.content.strip()!r}), not "
                    "code. " + instead
                )
            spliced = (
                splice_partial(current, edit.content)
                if splice and current is not None and path.endswith(".py")
                else None
            )
            if whole_seen is not None and current is not None:
                check_whole_file(
                    path,
                    current,
                    edit.content,
                    spliced=spliced is not None,
                    seen_whole=path in whole_seen,
                )
            files[path] = spliced if spliced is not None else edit.content
        elif edit.search is not None:
            replace = edit.replace or ""
            if not edit.search.strip():
                if current not in (None, ""):
                    raise FormatProblem(
                        f"The SEARCH block for {path} is empty but the file exists. An empty "
                        "SEARCH creates a new file; to change an existing one, copy the lines "
                        "to replace into SEARCH."
                    )
                files[path] = replace
            elif _PLACEHOLDER.fullmatch(edit.search.strip()):
                raise FormatProblem(
                    f"The SEARCH block for {path} holds a placeholder ({edit.search.strip()!r}). "
                    "Copy the real lines to change from the file."
                )
            elif current is None:
                raise FormatProblem(
                    f"{path} does not exist, so a SEARCH block cannot match in it. To create "
                    "it, send the whole file with its path on the line before the fence."
                )
            else:
                files[path] = _replace_once(current, edit.search, replace, path)
        else:
            raise FormatProblem(f"The edit for {path} has neither content nor SEARCH/REPLACE.")
    return files


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


def files_from_rendering(code: str, read: Reader) -> dict[str, str]:
    """The files a rendering made by :func:`render_files` (possibly edited by the user) sets.

    Its whole files are taken as they are (never spliced: a rendering is complete).
    """
    return apply_edits(parse_edits(code), read, splice=False)


def tree_diff(rendering: str, read: Reader) -> str:
    """A proposal's change to the files `read` gives (the user's tree), as a unified diff."""
    out = []
    for path, new in files_from_rendering(rendering, read).items():
        old = read(path)
        out += difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            new.splitlines(keepends=True),
            f"a/{path}" if old is not None else "/dev/null",
            f"b/{path}",
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


# ---------------------------------------------------------------- line endings
_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")


def to_lf(text: str) -> str:
    """Text with CRLF line ends as LF: what the model is shown and what edits apply to."""
    return text.replace("\r\n", "\n")


def keep_line_endings(base: str | None, new: str) -> str:
    """`new` (LF text) with the line endings of the file it replaces, `base`.

    Edits are made on LF text (replies, renderings and the model's view are LF), so a
    CRLF file would come back LF on every line. A file whose lines all end in CRLF gets
    CRLF on every line again; in a file that mixes both, lines the edit left alone keep
    their own ending and new lines get the more common one; LF files, new files and
    files without CRLF are returned as they are.
    """
    if base is None or "\r\n" not in base:
        return new
    lf_count = base.count("\n") - base.count("\r\n")
    new = to_lf(new)
    if lf_count == 0:
        return new.replace("\n", "\r\n")
    default = "\r\n" if base.count("\r\n") > lf_count else "\n"
    old_lines = _LINE.findall(base)
    old_bodies = [ln.removesuffix("\n").removesuffix("\r") for ln in old_lines]
    new_lines = _LINE.findall(new)
    new_bodies = [ln.removesuffix("\n") for ln in new_lines]
    out: list[str] = []
    matcher = difflib.SequenceMatcher(None, old_bodies, new_bodies, autojunk=False)
    for tag, i1, _i2, j1, j2 in matcher.get_opcodes():
        for k, j in enumerate(range(j1, j2)):
            line = new_lines[j]
            if not line.endswith("\n"):
                out.append(line)  # the last line, without an end
            elif tag == "equal" and old_lines[i1 + k].endswith("\n"):
                out.append(old_lines[i1 + k])
            else:
                out.append(line[:-1] + default)
    return "".join(out)
