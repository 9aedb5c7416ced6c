"""Undo fixloop's last commit, and harvest the user's later fixes of fixloop's commits.

Undo moves HEAD back to the parent of fixloop's commit and takes fixloop's
hunks out of the working tree and index; the user's uncommitted changes stay.
It refuses unless HEAD is exactly the commit a session logged making (an amended
fixloop commit, or any commit that merely carries the trailer, may hold the
user's work), when git is mid-merge/rebase, or when the user has since changed
the lines that would be reverted.

Harvest walks first-parent history: for every commit carrying a
``Fixloop-Session`` trailer, the first later non-fixloop commit within a window
that changes lines fixloop wrote (found with ``git blame``) is a correction;
so is an amended fixloop commit (found in HEAD's reflog).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from agent.events import Correction
from agent.workspace.commit import session_of
from agent.workspace.repo import ANY_GIT_ERROR, GitRepo, WorkspaceError

_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", re.MULTILINE)


@dataclass
class Undone:
    sha: str
    session_id: str
    files: list[str]
    subject: str
    log: Path  # the session log that records making the commit


def _session_log(sessions_dir: Path, session_id: str) -> Path | None:
    """The log named exactly `session_id` (a trailer is not trusted as a path or a prefix)."""
    from agent.session_log import session_files

    found = [p for p in session_files(sessions_dir) if p.stem == session_id]
    return found[-1] if found else None


def _made_by_fixloop(repo: GitRepo, head: str, sessions_dir: Path) -> tuple[str, Path]:
    """(session id, log) when a session's log records committing exactly `head`; else refuse."""
    from agent.events import Committed
    from agent.session_log import SessionLogError, read_session

    commit = repo.repo.commit(head)
    subject = str(commit.summary)
    session_id = session_of(str(commit.message))
    if session_id is None:
        raise WorkspaceError(
            f"Refusing to undo: HEAD ({head[:10]} {subject!r}) is not a fixloop commit. "
            "`fixloop undo` only reverts fixloop's last commit while it is still HEAD; "
            "nothing was changed. For an older commit use `git revert <sha>`."
        )
    log = _session_log(sessions_dir, session_id)
    made: list[Committed] = []
    if log is not None:
        try:
            made = read_session(log).of_type(Committed)
        except SessionLogError:
            made = []
    if log is None or not made:
        raise WorkspaceError(
            f"Refusing to undo: HEAD ({head[:10]} {subject!r}) names fixloop session "
            f"{session_id} in its message, but no fixloop session log records making it "
            f"(looked in {sessions_dir}). Undoing a commit fixloop did not make could delete "
            f"your own work, so nothing was changed. Revert it by hand with `git revert "
            f"{head[:10]}`, or pass the --sessions-dir that holds the session's log."
        )
    # The sha covers the tree, the parents and the message: equal sha, the very same commit.
    if not any(e.sha == head for e in made):
        raise WorkspaceError(
            f"Refusing to undo: HEAD {head[:10]} is not the commit fixloop made "
            f"({made[-1].sha[:10]}): it was amended, rebased or copied, or another commit "
            "with the same message was made in its place, so it may hold your own work. "
            f"Nothing was changed. Revert it by hand with `git revert {head[:10]}`."
        )
    return session_id, log


def undo_last(repo: GitRepo, sessions_dir: Path) -> Undone:
    """Revert fixloop's commit at HEAD; WorkspaceError (nothing changed) when that is not safe.

    HEAD must be byte for byte a commit that a session in `sessions_dir` logged making
    (its sha in a `Committed` event): a commit that merely carries the trailer, or
    fixloop's commit amended with the user's work, is refused.
    """
    repo.require_no_operation_in_progress()
    head = repo.head_sha()
    if head is None:
        raise WorkspaceError("Nothing to undo: the repository has no commits.")
    commit = repo.repo.commit(head)
    subject = str(commit.summary)
    session_id, log = _made_by_fixloop(repo, head, sessions_dir)
    if len(commit.parents) != 1:
        raise WorkspaceError(
            f"Refusing to undo: fixloop's commit {head[:8]} has {len(commit.parents)} parents; "
            "use `git revert` yourself. Nothing was changed."
        )
    parent = commit.parents[0].hexsha
    plans: list[tuple[str, str | None, str | None]] = []  # path, worktree, index
    for path in repo.changed_paths(head):
        ours = repo.blob_text(head, path)
        before = repo.blob_text(parent, path)
        now = repo.worktree_text(path)
        if now == ours:
            worktree = before
        elif now is None or before is None or ours is None:
            raise WorkspaceError(
                f"Refusing to undo: {path} was created or deleted by fixloop's commit and you "
                "have changed it since. Nothing was changed. Commit or discard your change first."
            )
        else:
            merged = repo.merge_text(now, ours, before)
            if merged.conflicts:
                raise WorkspaceError(
                    f"Refusing to undo: you have changed lines in {path} that fixloop's commit "
                    f"{head[:8]} wrote. Nothing was changed. Commit or discard your change "
                    "first, or use `git revert`."
                )
            worktree = merged.text
        entry = repo.index_entry(path)
        index = before
        ours_blob = repo.store_blob(ours) if ours is not None else None
        if entry is not None and entry[1] != ours_blob and ours is not None and before is not None:
            merged = repo.merge_text(repo.blob_text_by_sha(entry[1], path), ours, before)
            if merged.conflicts:
                raise WorkspaceError(
                    f"Refusing to undo: your staged changes in {path} overlap fixloop's commit. "
                    "Nothing was changed. Unstage them (git restore --staged) first."
                )
            index = merged.text
        plans.append((path, worktree, index))
    repo.move_head(parent, head, f"fixloop undo: {subject}")
    for path, worktree, index in plans:
        full = repo.root / path
        if worktree is None:
            full.unlink(missing_ok=True)
        else:
            full.parent.mkdir(parents=True, exist_ok=True)
            full.write_bytes(worktree.encode("utf-8"))  # as is: no newline translation
        repo.set_index(path, index, repo.tree_mode(parent, path))
    return Undone(head, session_id, [p for p, _, _ in plans], subject, log)


# ---------------------------------------------------------------- harvest
@dataclass
class Harvested:
    session_id: str
    fixloop_sha: str
    fix_sha: str
    kind: str  # "follow-up" or "amend"
    correction: Correction


def _touched_old_lines(repo: GitRepo, parent: str, sha: str, path: str) -> list[tuple[int, int]]:
    """Line ranges (1-based, inclusive, in the parent's file) a commit changes or inserts at."""
    diff = repo.git("diff", "-U0", "--no-color", parent, sha, "--", path)
    ranges = []
    for m in _HUNK_RE.finditer(diff):
        start, count = int(m[1]), int(m[2]) if m[2] is not None else 1
        if count == 0:  # pure insertion after line `start`: its neighbours count as touched
            ranges.append((max(start, 1), start + 1))
        else:
            ranges.append((start, start + count - 1))
    return ranges


def _blamed_to(
    repo: GitRepo, rev: str, path: str, ranges: list[tuple[int, int]], target: str
) -> bool:
    n_lines = len((repo.blob_text(rev, path) or "").splitlines())
    for start, end in ranges:
        start, end = min(start, n_lines), min(end, n_lines)
        if n_lines == 0 or start < 1:
            continue
        out = repo.git("blame", "--porcelain", "-L", f"{start},{end}", rev, "--", path)
        if any(line.startswith(target) for line in out.splitlines()):
            return True
    return False


def _correction(repo: GitRepo, proposed_rev: str, final_rev: str, paths: list[str]) -> Correction:
    proposed = {p: repo.blob_text(proposed_rev, p) or "" for p in paths}
    final = {p: repo.blob_text(final_rev, p) or "" for p in paths}
    return Correction(
        source="harvest",
        proposed=proposed,
        final=final,
        diff=text_diff(proposed, final),
        commit=final_rev,
    )


def text_diff(proposed: dict[str, str], final: dict[str, str]) -> str:
    """A unified diff from what fixloop proposed to what the user kept, file by file."""
    parts = []
    for path in sorted(set(proposed) | set(final)):
        parts.extend(
            difflib.unified_diff(
                proposed.get(path, "").splitlines(keepends=True),
                final.get(path, "").splitlines(keepends=True),
                fromfile=f"a/{path} (fixloop)",
                tofile=f"b/{path} (kept)",
            )
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in parts)


def harvest(repo: GitRepo, window: int = 10, max_commits: int = 1000) -> list[Harvested]:
    """Corrections of fixloop commits: follow-up fixes within `window` commits, and amends."""
    if window < 1:
        raise WorkspaceError("--window must be at least 1 (commits after a fixloop commit).")
    history = list(reversed(list(repo.iter_commits("HEAD", max_count=max_commits))))
    found: list[Harvested] = []
    for i, commit in enumerate(history):
        session_id = session_of(str(commit.message))
        if session_id is None or len(commit.parents) != 1:
            continue
        ours = set(repo.changed_paths(commit.hexsha))
        for later in history[i + 1 : i + 1 + window]:
            if session_of(str(later.message)) is not None or len(later.parents) != 1:
                continue
            parent = later.parents[0].hexsha
            common = sorted(ours & set(repo.changed_paths(later.hexsha)))
            touched = [
                p
                for p in common
                if _blamed_to(
                    repo,
                    parent,
                    p,
                    _touched_old_lines(repo, parent, later.hexsha, p),
                    commit.hexsha,
                )
            ]
            if touched:
                found.append(
                    Harvested(
                        session_id,
                        commit.hexsha,
                        later.hexsha,
                        "follow-up",
                        _correction(repo, commit.hexsha, later.hexsha, touched),
                    )
                )
                break
    found.extend(_amended(repo))
    return found


def _amended(repo: GitRepo) -> list[Harvested]:
    try:
        entries = list(repo.repo.head.log())
    except (*ANY_GIT_ERROR, ValueError):
        return []
    found = []
    for entry in entries:
        if not entry.message.startswith("commit (amend)"):
            continue
        old, new = entry.oldhexsha, entry.newhexsha
        try:
            session_id = session_of(repo.message(old))
        except (*ANY_GIT_ERROR, ValueError):
            continue  # the old commit was garbage-collected
        if session_id is None:
            continue
        paths = sorted(set(repo.changed_paths(old)) | set(repo.changed_paths(new)))
        paths = [p for p in paths if repo.blob_text(old, p) != repo.blob_text(new, p)]
        if paths:
            correction = _correction(repo, old, new, paths)
            found.append(Harvested(session_id, old, new, "amend", correction))
    return found
