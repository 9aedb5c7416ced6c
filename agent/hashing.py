"""The hashes fixloop computes: of a file's bytes, and of a task's text (its identity).

One place for each rule, so a model, an adapter, a dataset and a task are hashed
the same way wherever they are checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

CHUNK = 1 << 20  # bytes read at a time: a model file is never held in memory


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


def feed_file(
    digest: Digest,
    path: Path,
    *,
    chunk: int = CHUNK,
    on_chunk: Callable[[int], object] | None = None,
) -> int:
    """Add the bytes of `path` to `digest`, `chunk` bytes at a time; how many bytes were read.

    `on_chunk` is told the size of each piece (a progress bar's `update`).
    """
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
            size += len(block)
            if on_chunk is not None:
                on_chunk(len(block))
    return size


def sha256_file(path: Path, *, chunk: int = CHUNK) -> str:
    """The hex sha256 of a file's bytes, read `chunk` bytes at a time."""
    digest = hashlib.sha256()
    feed_file(digest, path, chunk=chunk)
    return digest.hexdigest()


def normalize_text(text: str) -> str:
    """A task's text as compared for identity: lower case, whitespace collapsed.

    Two texts that differ only in case or spacing are the same task, for the
    held-out rule (a re-cased evaluation task is still held out), for the
    trainer's train/validation split and for its deduplication.
    """
    return " ".join(text.lower().split())


def text_hash(text: str) -> str:
    """The hex sha256 of a task's normalized text: its identity when it has no id.

    Fixed: the held-out rule and the `sessions/...` task ids of the user's
    evaluation tasks are derived from it, so it must never change.
    """
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()
