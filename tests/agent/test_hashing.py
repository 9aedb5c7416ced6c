"""The one file hash and the one task-text hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

from agent.hashing import feed_file, sha256_file


def test_sha256_file_matches_hashlib_at_any_chunk_size(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40 + b"tail"
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == want
    assert sha256_file(path, chunk=7) == want
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()


def test_feed_file_counts_bytes_and_reports_each_chunk(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * 10)
    digest = hashlib.sha256(b"prefix")
    pieces: list[int] = []
    assert feed_file(digest, path, chunk=4, on_chunk=pieces.append) == 10
    assert pieces == [4, 4, 2]
    assert digest.hexdigest() == hashlib.sha256(b"prefix" + b"x" * 10).hexdigest()


def test_every_file_hash_is_the_one_helper(tmp_path: Path) -> None:
    from agent.backends import file_sha256
    from agent.models.provision import hash_file

    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 3000)
    want = hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_sha256(path) == want
    assert hash_file(path) == (want, 3004)
