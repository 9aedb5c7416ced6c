"""Accept: put fixloop's hunks in the working tree and commit exactly those, nothing of the user's.

A proposal was made against a snapshot of the working tree (`base`, the user's
uncommitted changes included). For each file fixloop changed, fixloop's change
is the diff base -> proposed. That change is merged three ways into:

* the working tree as it is now (so edits the user made since are kept),
* the file at HEAD (so the commit holds fixloop's hunks and none of the user's),
* the user's index entry, when the user has staged something in that file.

If any merge conflicts, nothing at all is written and :class:`WorkspaceError`
says which file and what to do. Files fixloop did not change are never touched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from agent.workspace.repo import TRAILER_KEY, GitRepo, WorkspaceError, inside

_TRAILER_RE = re.compile(rf"^{TRAILER_KEY}:\s*(\S+)\s*$", re.MULTILINE)


def session_of(message: str) -> str | None:
    """The fixloop session id in a commit message's trailer, or None for other commits."""
    found = _TRAILER_RE.findall(message)
    return found[-1] if found else None


def commit_message(
    summary: str, files: Mapping[str, str], session_id: str, detail: str = ""
) -> str:
    """`fixloop: <summary>`, the files changed, optional detail, then the session trailer."""
    subject = " ".join(summary.split()) or "apply fixloop's change"
    if len(subject) > 64:
        subject = subject[:61].rstrip() + "..."
    body = "Files changed by fixloop:\n" + "".join(f"  {p}\n" for p in sorted(files))
    if detail:
        body += f"\n{detail.strip()}\n"
    return f"fixloop: {subject}\n\n{body}\n{TRAILER_KEY}: {session_id}\n"


@dataclass
class _Plan:
    path: str
    worktree: str
    commit: str
    index: str | None  # None: the user's index entry already matches the commit


def _conflict(path: str, what: str) -> WorkspaceError:
    return WorkspaceError(
        f"Refusing to accept: fixloop's change to {path} overlaps {what}. Nothing was changed. "
        f"Commit or stash your own change to {path} first and accept again, or apply the "
        "proposal by hand and run `fixloop accept --edited`."
    )


def _plan(repo: GitRepo, head: str | None, path: str, base: str | None, new: str) -> _Plan:
    now = repo.worktree_text(path)
    at_head = repo.blob_text(head, path)
    if now is None and base is not None:
        raise WorkspaceError(
            f"Refusing to accept: {path} was deleted from the working tree after fixloop "
            "proposed its change. Nothing was changed. Restore it (git checkout -- "
            f"{path}) or run the task again."
        )
    if now == base:
        worktree = new
    else:
        merged = repo.merge_text(now or "", base or "", new)
        if merged.conflicts:
            raise _conflict(path, "changes you made to it after the proposal")
        worktree = merged.text
    if at_head is None and base is not None:
        raise WorkspaceError(
            f"Refusing to accept: {path} is not committed yet (it is new in your working tree), "
            "so committing fixloop's change would commit your file too. Nothing was changed. "
            f"Commit {path} yourself first, then accept again."
        )
    if at_head == base:
        committed = new
    else:
        merged = repo.merge_text(at_head or "", base or "", new)
        if merged.conflicts:
            raise _conflict(path, "your uncommitted changes in the same lines")
        committed = merged.text
    index: str | None = None
    entry = repo.index_entry(path)
    head_blob = repo.store_blob(at_head) if at_head is not None else None
    if entry is not None and entry[1] != head_blob:
        staged = repo.blob_text_by_sha(entry[1], path)
        merged = repo.merge_text(staged, at_head or "", committed)
        if merged.conflicts:
            raise _conflict(path, "changes you have staged in that file")
        index = merged.text
    return _Plan(path, worktree, committed, index)


def accept_files(
    repo: GitRepo, proposed: Mapping[str, str], base: Mapping[str, str | None], message: str
) -> tuple[str, list[str]]:
    """Apply fixloop's changes (base -> proposed) and commit them; (sha, files committed)."""
    repo.require_no_operation_in_progress()
    head = repo.head_sha()
    for path in proposed:
        inside(repo.root, path)
    plans = [
        _plan(repo, head, path, base.get(path), new)
        for path, new in sorted(proposed.items())
        if new != base.get(path)
    ]
    plans = [p for p in plans if p.commit != repo.blob_text(head, p.path)]
    if not plans:
        raise WorkspaceError(
            "Nothing to commit: the accepted proposal does not change any file relative to HEAD."
        )
    sha = repo.commit_files({p.path: p.commit for p in plans}, message)
    for p in plans:
        full = inside(repo.root, p.path)
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(p.worktree.encode("utf-8"))  # as is: no newline translation
        repo.set_index(
            p.path, p.index if p.index is not None else p.commit, repo.tree_mode(sha, p.path)
        )
    return sha, [p.path for p in plans]
