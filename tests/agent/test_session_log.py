"""The session log: writing, reading back, torn tails, migrations, listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.events import (
    SCHEMA_VERSION,
    EpisodeFinished,
    ModelIdentity,
    SessionStarted,
    Task,
    TokenDelta,
    TurnStarted,
    UserRejected,
)
from agent.session_log import (
    MIGRATIONS,
    SessionLogError,
    SessionLogWriter,
    find_session,
    list_sessions,
    new_session_id,
    read_session,
    session_path,
)


def header(
    session_id: str = "20260101-000000-abcdef", text: str = "reverse a string"
) -> SessionStarted:
    return SessionStarted(
        session_id=session_id,
        fixloop_version="0.1.0",
        model=ModelIdentity(name="m", backend="scripted"),
        task=Task(text=text, tests=["assert f('ab') == 'ba'"]),
        purpose="solve",
    )


def write_session(
    sessions_dir: Path, session_id: str = "20260101-000000-abcdef", outcome: str = "passed"
) -> Path:
    path = session_path(sessions_dir, session_id)
    writer = SessionLogWriter(path)
    writer.write(header(session_id))
    writer.write(TurnStarted(turn=1))
    writer.write(TokenDelta(turn=1, text="never logged"))
    writer.write(EpisodeFinished(outcome=outcome, turns=1))  # type: ignore[arg-type]
    writer.close()
    return path


def test_writer_numbers_events_and_skips_token_deltas(tmp_path: Path) -> None:
    path = write_session(tmp_path)
    assert path.parent.parent == tmp_path and path.suffix == ".jsonl"
    lines = path.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [0, 1, 2]
    assert "never logged" not in path.read_text()
    record = read_session(path)
    assert record.header.schema_version == SCHEMA_VERSION
    assert [e.type for e in record.events] == ["turn_started", "episode_finished"]
    assert record.outcome is not None and record.outcome.outcome == "passed"
    assert not record.torn_tail and record.migrated_from is None


def test_writer_refuses_events_before_the_header(tmp_path: Path) -> None:
    writer = SessionLogWriter(tmp_path / "x.jsonl")
    with pytest.raises(SessionLogError, match="first event must be session_started"):
        writer.write(TurnStarted(turn=1))


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = write_session(tmp_path)
    full = UserRejected(turn=1, reason="a reason long enough to be cut", seq=3).model_dump_json()
    with open(path, "a") as fh:
        fh.write(full[: len(full) // 2])  # what a kill -9 mid-write leaves
    record = read_session(path)
    assert record.torn_tail
    assert [e.seq for e in record.events] == [1, 2]


def test_a_bad_line_in_the_middle_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = write_session(tmp_path)
    lines = path.read_text().splitlines()
    lines[1] = '{"type": "turn_started", "seq": 1'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SessionLogError, match=r":2: not a valid event"):
        read_session(path)


def test_a_gap_in_sequence_numbers_is_an_error(tmp_path: Path) -> None:
    path = write_session(tmp_path)
    lines = path.read_text().splitlines()
    del lines[1]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SessionLogError, match="sequence number 2, expected 1"):
        read_session(path)


def test_empty_or_headless_logs_are_rejected(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(SessionLogError, match="empty session log"):
        read_session(empty)
    headless = tmp_path / "headless.jsonl"
    headless.write_text(TurnStarted(turn=1).model_dump_json() + "\n")
    with pytest.raises(SessionLogError, match="first line must be the session_started header"):
        read_session(headless)


def test_newer_schema_is_refused_with_a_fix(tmp_path: Path) -> None:
    path = write_session(tmp_path)
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    first["schema_version"] = SCHEMA_VERSION + 1
    lines[0] = json.dumps(first)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SessionLogError, match="upgrade fixloop"):
        read_session(path)


def test_older_schema_is_migrated_through_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log of a made-up previous version, where the turn field was called `attempt`."""
    old = SCHEMA_VERSION - 1

    def rename_attempt(raw: dict) -> dict:
        if "attempt" in raw:
            raw["turn"] = raw.pop("attempt")
        return raw

    monkeypatch.setitem(MIGRATIONS, old, rename_attempt)
    head = header().model_dump(mode="json")
    head["schema_version"] = old
    lines = [head, {"type": "turn_started", "seq": 1, "ts": 1.0, "attempt": 7}]
    path = tmp_path / "old.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    record = read_session(path)
    assert record.migrated_from == old
    assert record.header.schema_version == SCHEMA_VERSION
    assert isinstance(record.events[0], TurnStarted) and record.events[0].turn == 7


def test_older_schema_without_a_migration_is_refused(tmp_path: Path) -> None:
    head = header().model_dump(mode="json")
    head["schema_version"] = 0  # before the first version: no migration exists
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(head) + "\n")
    with pytest.raises(SessionLogError, match="no migration from version"):
        read_session(path)


def test_list_and_find_sessions(tmp_path: Path) -> None:
    a = write_session(tmp_path, "20260101-000000-aaaaaa", "passed")
    b = write_session(tmp_path, "20260101-000001-bbbbbb", "failed")
    broken = a.parent / "20260101-000002-cccccc.jsonl"
    broken.write_text("not json\n")
    rows = list_sessions(tmp_path)
    assert [r.session_id for r in rows] == [a.stem, b.stem, broken.stem]
    assert [r.outcome for r in rows[:2]] == ["passed", "failed"]
    assert rows[0].turns == 1 and rows[0].task == "reverse a string" and rows[0].n_events == 3
    assert rows[2].error is not None and rows[2].outcome is None
    assert find_session(tmp_path, "20260101-000001") == b
    assert find_session(tmp_path, str(a)) == a
    with pytest.raises(SessionLogError, match="matches 3 sessions"):
        find_session(tmp_path, "20260101")
    with pytest.raises(SessionLogError, match="no session"):
        find_session(tmp_path, "1999")
    assert list_sessions(tmp_path / "nowhere") == []


def test_session_ids_are_unique_and_sortable() -> None:
    ids = {new_session_id(1_700_000_000.0) for _ in range(50)}
    assert len(ids) == 50
    assert new_session_id(1_700_000_000.0) < new_session_id(1_800_000_000.0)
