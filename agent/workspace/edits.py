"""Applying the model's proposed file edits to the current files, and checking them.

The edits come from :func:`agent.workspace.edit_format.parse_edits`. A "whole file" for a
Python file that redefines some of its functions is spliced into it
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
from collections.abc import Callable, Collection, Sequence

from agent.environment import FormatProblem
from agent.events import FileEdit
from agent.workspace.edit_format import parse_edits, safe_relpath
from agent.workspace.partial import splice_partial


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


_CUT_DOC_NOTE = re.compile(
    r"^[ \t]*# fixloop: lines \d+-\d+ \(lines (\d+)-(\d+), the rest of the docstring, "
    r"not shown\)\n?",
    re.M,
)


def strip_notes(edits: list[FileEdit], read: Reader | None = None) -> list[FileEdit]:
    """The edits without fixloop's ``# fixloop: lines a-b`` notes copied from the context.

    With `read`, a note that stands for a cut docstring's lines, copied into a SEARCH or
    REPLACE, becomes those lines of the file again, so the SEARCH matches the file (the
    1.5B model copies the view, note and all). A whole definition keeps the note's meaning
    another way: it is spliced, keeping the original's docstring.
    """

    def clean(text: str | None) -> str | None:
        return NOTE_LINE.sub("", text) if text else text

    def restore(text: str | None, path: str) -> str | None:
        if not text or read is None or not _CUT_DOC_NOTE.search(text):
            return clean(text)
        lines = (read(path) or "").splitlines(keepends=True)

        def hidden(m: re.Match[str]) -> str:
            first, last = int(m.group(1)), int(m.group(2))
            return "".join(lines[first - 1 : last]) if 1 <= first <= last <= len(lines) else ""

        return clean(_CUT_DOC_NOTE.sub(hidden, text))

    return [
        e.model_copy(
            update={
                "content": clean(e.content),
                "search": restore(e.search, e.path),
                "replace": restore(e.replace, e.path),
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
        path, current = _target(edit, files, read, candidates)
        if edit.content is not None:
            files[path] = _whole_file(path, current, edit.content, splice, whole_seen)
        elif edit.search is not None:
            files[path] = _search_replace(path, current, edit.search, edit.replace or "", splice)
        else:
            raise FormatProblem(f"The edit for {path} has neither content nor SEARCH/REPLACE.")
    return files


def _target(
    edit: FileEdit, files: dict[str, str], read: Reader, candidates: Sequence[str]
) -> tuple[str, str | None]:
    """The file an edit applies to and its current text (as edited so far): its own path, or
    for a SEARCH block on a missing file, the one candidate holding the SEARCH text."""
    path = safe_relpath(edit.path)
    current = files[path] if path in files else read(path)
    if current is None and edit.search and edit.search.strip():
        holders = [c for c in candidates if edit.search in (files.get(c) or read(c) or "")]
        if len(holders) == 1:
            path = holders[0]
            current = files[path] if path in files else read(path)
    return path, current


def _whole_file(
    path: str,
    current: str | None,
    content: str,
    splice: bool,
    whole_seen: Collection[str] | None,
) -> str:
    """A whole-file block's new text for `path` (spliced into `current` when it redefines
    only some definitions); FormatProblem for a marker, a placeholder or destroyed code."""
    guarded = whole_seen is not None and current is not None
    if guarded and (marker := _MARKER.search(content)):
        raise FormatProblem(
            f"Your code block for {path} holds fixloop's note {marker.group(0)!r}, which "
            "marks lines that were not shown: sent as the file, it would delete them. "
            + SEND_INSTEAD
        )
    if _PLACEHOLDER.fullmatch(content.strip()):
        instead = (
            SEND_INSTEAD
            if guarded and path not in (whole_seen or ())
            else "Send the real content of the file."
        )
        raise FormatProblem(
            f"The block for {path} holds a placeholder ({content.strip()!r}), not code. " + instead
        )
    spliced = (
        splice_partial(current, content)
        if splice and current is not None and path.endswith(".py")
        else None
    )
    if whole_seen is not None and current is not None:
        check_whole_file(
            path,
            current,
            content,
            spliced=spliced is not None,
            seen_whole=path in whole_seen,
        )
    return spliced if spliced is not None else content


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def _search_replace(
    path: str, current: str | None, search: str, replace: str, splice: bool = True
) -> str:
    """A SEARCH/REPLACE block's new text for `path`: an empty SEARCH creates the file.

    A SEARCH that does not match a Python file, whose REPLACE holds whole definitions of
    that file, is read as those definitions sent alone (spliced by name): the 1.5B model
    copies a function together with the outline's stubs after it into SEARCH, and the
    fixed function with the same stubs into REPLACE.
    """
    if not search.strip():
        if current not in (None, ""):
            raise FormatProblem(
                f"The SEARCH block for {path} is empty but the file exists. An empty "
                "SEARCH creates a new file; to change an existing one, copy the lines "
                "to replace into SEARCH."
            )
        return replace
    if _PLACEHOLDER.fullmatch(search.strip()):
        raise FormatProblem(
            f"The SEARCH block for {path} holds a placeholder ({search.strip()!r}). "
            "Copy the real lines to change from the file."
        )
    if current is None:
        raise FormatProblem(
            f"{path} does not exist, so a SEARCH block cannot match in it. To create "
            "it, send the whole file with its path on the line before the fence."
        )
    if _lines(search) == _lines(replace):
        raise FormatProblem(
            f"Your block for {path} replaces lines with the same lines: it changes nothing. "
            "Below ======= write the lines as they should be, with the fix."
        )
    try:
        return _replace_once(current, search, replace, path)
    except FormatProblem:
        spliced = splice_partial(current, replace) if splice and path.endswith(".py") else None
        if spliced is None or spliced == current:
            raise
        return spliced


def files_from_rendering(code: str, read: Reader) -> dict[str, str]:
    """The files a rendering made by :func:`agent.workspace.edit_format.render_files`
    (possibly edited by the user) sets.

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
