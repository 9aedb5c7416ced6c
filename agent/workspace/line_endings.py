"""Line endings: edits are made on LF text, and a file keeps its CRLF endings when written back."""

from __future__ import annotations

import difflib
import re

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
