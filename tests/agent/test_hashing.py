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


def test_text_hash_is_fixed() -> None:
    """The held-out rule and the `sessions/...` eval ids are derived from it: it never changes."""
    from agent.hashing import text_hash

    want = "b762bb35620d5877d6962f917f651a7b0ee8e86087a0565ce0bb3472e2e666b7"
    assert text_hash("  Write a function  that reverses a string.\n") == want
    assert want == hashlib.sha256(b"write a function that reverses a string.").hexdigest()


def test_one_task_identity_for_the_held_out_rule_and_the_trainer() -> None:
    """Case and spacing aside, a task is the same task: held out alike, keyed and split alike.

    The trainer's key used to keep case, so `Reverse...` and `reverse...` could land on both
    sides of the train/validation split while the held-out rule called them one task.
    """
    from agent.events import Task
    from agent.hashing import text_hash
    from evals.suites import text_is_heldout
    from trainer.data.build import split_of
    from trainer.data.episodes import task_key

    texts = [f"Reverse the words of sentence {i}." for i in range(40)]
    for text in texts:
        variants = [text, text.upper(), "  " + text.lower().replace(" ", "\t ") + "\n"]
        keys = {task_key(Task(text=v)) for v in variants}
        assert keys == {f"text:{text_hash(text)[:16]}"}
        assert len({split_of(k, 0.5) for k in keys}) == 1
        assert len({text_is_heldout(v) for v in variants}) == 1
    assert task_key(Task(text="x", task_id="mbpp/601")) == "mbpp/601"
