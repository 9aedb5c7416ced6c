"""Workspace actions taken after a session ended (accept, undo, harvest) go into its log.

The log format is :mod:`agent.session_log`'s: this only appends whole, numbered
lines after the last valid event (a torn last line is cut off first), reads back
the proposal a workspace session ended with, and accepts it from the log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent.episode import fold
from agent.events import (
    Committed,
    Correction,
    Event,
    UserAccepted,
)
from agent.session_log import SessionLogError, SessionRecord, find_session, read_session
from agent.workspace.commit import accept_files, commit_message
from agent.workspace.edits import files_from_rendering
from agent.workspace.history import text_diff
from agent.workspace.line_endings import keep_line_endings, to_lf
from agent.workspace.repo import GitRepo, WorkspaceError


@dataclass
class LoggedProposal:
    record: SessionRecord
    turn: int
    code: str  # the whole-file rendering the workspace environment logged
    passed: bool


def append_events(path: Path, events: list[Event]) -> list[Event]:
    """Append events to an existing session log, numbered after its last event.

    The file is extended in place (same inode, so a writer that still has it open keeps
    writing to the file everyone reads); a torn last line left by a crash is cut first.
    """
    record = read_session(path)
    seq = record.events[-1].seq if record.events else record.header.seq
    data = path.read_bytes()
    keep = len(data)
    prefix = b""
    if record.torn_tail:  # drop the partial line a crash left, keep everything valid
        keep = data.rfind(b"\n") + 1
    elif data and not data.endswith(b"\n"):
        prefix = b"\n"
    lines = []
    for event in events:
        seq += 1
        event.seq = seq
        lines.append(event.model_dump_json() + "\n")
    with open(path, "r+b") as fh:
        fh.truncate(keep)
        fh.seek(keep)
        fh.write(prefix + "".join(lines).encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
    return events


def session_log_for(sessions_dir: Path, session_id: str) -> Path | None:
    try:
        return find_session(sessions_dir, session_id)
    except SessionLogError:
        return None


def logged_corrections(path: Path) -> set[str]:
    """Commits whose corrections are already in a log (harvest runs are idempotent)."""
    return {e.commit for e in read_session(path).events if isinstance(e, Correction) and e.commit}


def last_proposal(record: SessionRecord) -> LoggedProposal:
    """The proposal the session would accept: the episode fold's final proposal (the last
    cycle's best attempt), as `AgentSession.accept` would keep it."""
    final = fold(record.events, header=record.header).final_proposal()
    if final is None or final[2] is None:
        raise SessionLogError(
            f"session {record.session_id} has no proposal to accept (no attempt produced edits)"
        )
    code, _edits, attempt = final
    return LoggedProposal(record, attempt.turn, code, attempt.passed)


@dataclass
class LoggedAccept:
    sha: str
    files: list[str]
    events: list[Event]  # UserAccepted, Correction (when edited), Committed: appended to the log
    corrected: bool


def accept_logged(repo: GitRepo, record: SessionRecord, edited: bool) -> LoggedAccept:
    """Commit a finished workspace session's proposal and log it (WorkspaceError: refused).

    Plain: fixloop's hunks only, merged into the working tree as on an in-session accept
    (the working tree is taken to be what the proposal was made against).
    `edited`: the user has put their own version of the proposal's files in the working
    tree; those files are committed as they are, and the difference from the proposal
    is logged as the user's correction.
    """
    chosen = last_proposal(record)
    task = record.header.task

    def read_lf(path: str) -> str | None:
        text = repo.worktree_text(path)
        return None if text is None else to_lf(text)

    # The rendering is LF text: each file gets the line endings it has in the tree back.
    proposed = {
        path: keep_line_endings(repo.worktree_text(path), text)
        for path, text in files_from_rendering(chosen.code, read_lf).items()
    }
    summary = task.text.strip().splitlines()[0] if task.text.strip() else ""
    status = "passed" if chosen.passed else "did not pass"
    events: list[Event] = [UserAccepted(turn=chosen.turn, code=chosen.code, edited=edited)]
    if edited:
        final = {p: repo.worktree_text(p) or "" for p in proposed}
        detail = f"Proposal of turn {chosen.turn} ({status}), edited by the user."
        message = commit_message(summary, final, record.session_id, detail)
        head = repo.head_sha()
        changed = {p: t for p, t in final.items() if t != repo.blob_text(head, p)}
        if not changed:
            raise WorkspaceError(
                "The proposal's files in the working tree are the same as at HEAD: nothing to "
                "commit. Edit them first (or run `fixloop accept` without --edited)."
            )
        sha = repo.commit_files(changed, message)
        for path, text in changed.items():
            repo.set_index(path, text, repo.tree_mode(sha, path))
        files = sorted(changed)
        if final != proposed:
            events.append(
                Correction(
                    source="accept_edited",
                    proposed=proposed,
                    final=final,
                    diff=text_diff(proposed, final),
                    commit=sha,
                )
            )
    else:
        base = {p: repo.worktree_text(p) for p in proposed}
        message = commit_message(
            summary, proposed, record.session_id, f"Proposal of turn {chosen.turn} ({status})."
        )
        sha, files = accept_files(repo, proposed, base, message)
    events.append(Committed(sha=sha, files=files, message=message, repo=str(repo.root)))
    append_events(record.path, events)
    return LoggedAccept(sha, files, events, any(isinstance(e, Correction) for e in events))
