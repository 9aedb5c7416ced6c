"""The session log: one JSONL file per session, written as things happen, read back safely.

Layout: ``<sessions_dir>/<YYYY-MM-DD>/<session-id>.jsonl``. Line 1 is the
`SessionStarted` header (seq 0, schema version, fixloop version, model
identity, effective config, task); every later line is one event with the next
sequence number. Each line is written with one `write` and flushed before the
event is handed to any consumer, and the file is fsynced at turn boundaries,
so a crash or `kill -9` loses at most a partly written last line, which the
reader tolerates. `TokenDelta` is never written (the reply is logged whole as
`ModelReplied`).

The reader validates every line against the event schema and upgrades logs
written by older schema versions through `MIGRATIONS`.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.errors import FixloopError
from agent.events import (
    EPHEMERAL,
    EVENT_ADAPTER,
    SCHEMA_VERSION,
    EpisodeFinished,
    Event,
    SessionStarted,
)

SUFFIX = ".jsonl"

# Events after which the file is fsynced: the ends of turns and of user actions.
FSYNC_AFTER = frozenset(
    {
        "session_started",
        "turn_started",
        "exec_finished",
        "format_error",
        "repair_requested",
        "episode_finished",
        "user_feedback",
        "user_edited",
        "user_accepted",
        "user_rejected",
        "committed",
        "correction",
        "error",
    }
)

# MIGRATIONS[v] turns one raw event dict written by schema version v into its
# version v+1 form. The header's `schema_version` is bumped by the reader.
# Add an entry here whenever SCHEMA_VERSION is raised.
Migration = Callable[[dict[str, Any]], dict[str, Any]]


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """v2 logs the rendered feedback with each execution (`ExecFinished.feedback`) and a hand
    edit once (`UserEdited`, no `Correction(source="edit")`). A v1 line reads as it is: the
    new field is optional, and the episode fold renders the feedback of a v1 execution and
    skips a v1 edit's duplicate correction (`agent.episode`)."""
    return raw


def _v2_to_v3(raw: dict[str, Any]) -> dict[str, Any]:
    """v3 adds a value, `RepairRequested.reason == "restart"` (the restart and mixed
    policies). A v2 line reads as it is."""
    return raw


MIGRATIONS: dict[int, Migration] = {1: _v1_to_v2, 2: _v2_to_v3}


class SessionLogError(FixloopError, ValueError):
    """A log that cannot be read; the message names the file, the line and the problem."""


def new_session_id(now: float | None = None) -> str:
    """A sortable, unique id: ``YYYYMMDD-HHMMSS-<6 hex>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}-{secrets.token_hex(3)}"


def session_path(sessions_dir: Path, session_id: str, now: float | None = None) -> Path:
    day = datetime.fromtimestamp(now if now is not None else time.time()).strftime("%Y-%m-%d")
    return sessions_dir / day / f"{session_id}{SUFFIX}"


def ensure_sessions_dir(sessions_dir: Path) -> Path:
    """Create `sessions_dir` if needed and check a log can be written in it.

    Called before an episode starts, so that a session is never run only to be lost;
    raises SessionLogError naming the directory and how to choose another.
    """
    fix = "set FIXLOOP_SESSIONS_DIR (or sessions_dir in the config file) to a writable directory"
    if sessions_dir.exists() and not sessions_dir.is_dir():
        raise SessionLogError(f"the sessions directory {sessions_dir} is not a directory: {fix}")
    try:
        sessions_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=sessions_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SessionLogError(
            f"cannot create or write the sessions directory {sessions_dir} "
            f"({exc.strerror or exc}): {fix}"
        ) from exc
    return sessions_dir


class SessionLogWriter:
    """Appends events to one session's log, numbering them; the first must be the header.

    The file is opened for each event and closed again, so a session that is
    never closed leaks no handle, and every event is complete on disk (flushed,
    and fsynced at turn boundaries) when `write` returns.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._next_seq = 0

    def write(self, event: Event) -> Event:
        """Number and append `event` (ephemeral events pass through unwritten); returns it."""
        if event.type in EPHEMERAL:
            return event
        if self._next_seq == 0:
            if not isinstance(event, SessionStarted):
                raise SessionLogError(f"{self.path}: the first event must be session_started")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        event.seq = self._next_seq
        line = event.model_dump_json() + "\n"
        with open(self.path, "x" if self._next_seq == 0 else "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            if event.type in FSYNC_AFTER:
                os.fsync(fh.fileno())
        self._next_seq += 1
        return event

    @property
    def events_written(self) -> int:
        return self._next_seq

    def close(self) -> None:
        """Nothing stays open between events; kept so sessions have one shutdown call."""


@dataclass
class SessionRecord:
    """A session read back: its header, its events (header excluded), and how it was read."""

    path: Path
    header: SessionStarted
    events: list[Event] = field(default_factory=list)
    torn_tail: bool = False  # the last line was cut off (crash) and was skipped
    migrated_from: int | None = None  # schema version the file was written with, if older

    @property
    def session_id(self) -> str:
        return self.header.session_id

    @property
    def outcome(self) -> EpisodeFinished | None:
        """The session's outcome: its last EpisodeFinished (None if no episode finished)."""
        for event in reversed(self.events):
            if isinstance(event, EpisodeFinished):
                return event
        return None

    def of_type(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def _migrate(raw: dict[str, Any], version: int, where: str) -> dict[str, Any]:
    for v in range(version, SCHEMA_VERSION):
        if v not in MIGRATIONS:
            raise SessionLogError(
                f"{where}: written by schema version {version}; no migration from version {v} "
                f"to {v + 1} is known"
            )
        raw = MIGRATIONS[v](raw)
    return raw


def read_session(path: Path) -> SessionRecord:
    """Read and validate one log. A torn (unterminated, unparsable) last line is skipped."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SessionLogError(f"cannot read session log {path}: {exc.strerror}") from exc
    lines = data.split(b"\n")
    terminated = lines[-1] == b""
    if terminated:
        lines.pop()
    if not lines or not lines[0].strip():
        raise SessionLogError(f"{path}: empty session log (no header line)")
    version = SCHEMA_VERSION
    header: SessionStarted | None = None
    events: list[Event] = []
    torn = False
    for index, line in enumerate(lines):
        lineno = index + 1
        last_unterminated = index == len(lines) - 1 and not terminated
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            if header is None:
                version = int(raw.get("schema_version", SCHEMA_VERSION))
                if version > SCHEMA_VERSION:
                    raise SessionLogError(
                        f"{path}: written by a newer fixloop (schema version {version}, this "
                        f"one reads up to {SCHEMA_VERSION}); upgrade fixloop to read it"
                    )
            if version < SCHEMA_VERSION:
                raw = _migrate(raw, version, f"{path}:{lineno}")
                if header is None:
                    raw["schema_version"] = SCHEMA_VERSION
            event = EVENT_ADAPTER.validate_python(raw)
        except SessionLogError:
            raise
        except (ValueError, ValidationError) as exc:
            if last_unterminated and header is not None:
                torn = True
                break
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SessionLogError(f"{path}:{lineno}: not a valid event ({detail})") from exc
        if header is None:
            if not isinstance(event, SessionStarted) or event.seq != 0:
                raise SessionLogError(
                    f"{path}:1: the first line must be the session_started header"
                )
            header = event
            continue
        expected = events[-1].seq + 1 if events else 1
        if event.seq != expected:
            raise SessionLogError(
                f"{path}:{lineno}: sequence number {event.seq}, expected {expected} "
                "(lines missing or out of order)"
            )
        events.append(event)
    assert header is not None
    return SessionRecord(
        path=path,
        header=header,
        events=events,
        torn_tail=torn,
        migrated_from=version if version < SCHEMA_VERSION else None,
    )


@dataclass
class SessionSummary:
    """One line of `fixloop sessions list`."""

    session_id: str
    path: Path
    started: float
    model: str
    purpose: str
    task: str
    outcome: str | None
    turns: int
    n_events: int
    error: str | None = None  # set when the log could not be read


def session_files(sessions_dir: Path) -> list[Path]:
    if not sessions_dir.is_dir():
        return []
    return sorted(sessions_dir.glob(f"*/*{SUFFIX}"), key=lambda p: (p.parent.name, p.name))


def summarize(path: Path) -> SessionSummary:
    try:
        record = read_session(path)
    except SessionLogError as exc:
        return SessionSummary(
            path.stem, path, path.stat().st_mtime, "?", "?", "", None, 0, 0, str(exc)
        )
    outcome = record.outcome
    first_line = record.header.task.text.strip().splitlines()[0] if record.header.task.text else ""
    return SessionSummary(
        session_id=record.session_id,
        path=path,
        started=record.header.ts,
        model=record.header.model.key,
        purpose=record.header.purpose,
        task=first_line,
        outcome=outcome.outcome if outcome else None,
        turns=sum(e.type == "turn_started" for e in record.events),
        n_events=len(record.events) + 1,
    )


def list_sessions(sessions_dir: Path) -> list[SessionSummary]:
    """Every session under `sessions_dir`, oldest first; unreadable logs carry `error`."""
    return [summarize(p) for p in session_files(sessions_dir)]


def find_session(sessions_dir: Path, ident: str) -> Path:
    """The log of a session id (or a unique prefix of one, or a path to a log)."""
    as_path = Path(ident)
    if as_path.suffix == SUFFIX and as_path.is_file():
        return as_path
    files = session_files(sessions_dir)
    exact = [p for p in files if p.stem == ident]
    if exact:
        return exact[0]
    matches = [p for p in files if p.stem.startswith(ident)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SessionLogError(
            f"no session {ident!r} under {sessions_dir}; `fixloop sessions list` shows the ids"
        )
    raise SessionLogError(
        f"{ident!r} matches {len(matches)} sessions ({', '.join(p.stem for p in matches[:4])}"
        f"{', ...' if len(matches) > 4 else ''}); give more of the id"
    )
