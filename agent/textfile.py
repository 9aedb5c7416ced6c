"""Reading a text file a user named: UTF-8 or a sentence saying why not, never a traceback."""

from __future__ import annotations

from pathlib import Path

from agent.errors import FixloopError


class NotTextError(FixloopError, ValueError):
    """A file that is not UTF-8 text; the message names the file, the problem and the fix."""


def decode_text(data: bytes, where: str, *, allow_nul: bool = False) -> str:
    """`data` as UTF-8 (a leading byte-order mark dropped), or NotTextError naming `where`.

    NUL bytes make a file binary unless `allow_nul` (program output may hold them;
    source code and prose never do).
    """
    if not allow_nul and b"\0" in data:
        raise NotTextError(f"{where} is a binary file, not UTF-8 text; give a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise NotTextError(
            f"{where} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
            "save it as UTF-8"
        ) from exc


def read_text(path: Path, where: str | None = None, *, allow_nul: bool = False) -> str:
    """The text of the file at `path` (see `decode_text`).

    Raises NotTextError for a directory or a file that is not text, and OSError
    when it cannot be read at all.
    """
    where = where or str(path)
    if path.is_dir():
        raise NotTextError(f"{where} is a directory; give a file")
    return decode_text(path.read_bytes(), where, allow_nul=allow_nul)
