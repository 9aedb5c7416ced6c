"""Accept, undo and harvest on real temporary git repositories (no model, no sandbox)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from agent.workspace import (
    GitRepo,
    WorkspaceError,
    accept_files,
    commit_message,
    harvest,
    session_of,
    undo_last,
)

MODULE = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(8))
FIXED = MODULE.replace("return x + 1\n", "return x + 100\n")


def init_repo(root: Path, files: dict[str, str]) -> git.Repo:
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "Test User")
        cfg.set_value("user", "email", "test@example.com")
    write(root, files)
    repo.index.add(list(files))
    repo.index.commit("initial")
    return repo


def write(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def status(repo: git.Repo) -> str:
    return repo.git.status("--porcelain")


def sessions_of(root: Path) -> Path:
    """The session logs of the tests' sessions: next to the repository, not in it."""
    return root.parent / "sessions"


def log_commit(root: Path, sid: str, sha: str, files: list[str], message: str) -> Path:
    """What a session logs when it commits: its header (once), then a Committed event."""
    from agent.events import Committed, ModelIdentity, SessionStarted, Task
    from agent.session_log import SessionLogWriter, session_path
    from agent.workspace.sessionlog import append_events, session_log_for

    event = Committed(sha=sha, files=files, message=message, repo=str(root))
    log = session_log_for(sessions_of(root), sid)
    if log is not None:
        append_events(log, [event])
        return log
    log = session_path(sessions_of(root), sid)
    writer = SessionLogWriter(log)
    writer.write(
        SessionStarted(
            session_id=sid,
            fixloop_version="0",
            task=Task(text="make f1 add 100", kind="workspace", workdir=str(root), test_cmd="t"),
            model=ModelIdentity(name="m", backend="scripted"),
        )
    )
    writer.write(event)
    writer.close()
    return log


def accept(root: Path, proposed: dict[str, str], base: dict[str, str | None], sid: str = "s-1"):
    message = commit_message("make f1 add 100", proposed, sid, "Test command: pytest (passed)")
    with GitRepo(root) as repo:
        sha, files = accept_files(repo, proposed, base, message)
    log_commit(root, sid, sha, files, message)
    return sha, files


def undo(root: Path):
    with GitRepo(root) as repo:
        return undo_last(repo, sessions_of(root))


def harvest_in(root: Path, **kwargs: int):
    with GitRepo(root) as repo:
        return harvest(repo, **kwargs)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[git.Repo]:
    repo = init_repo(
        tmp_path / "repo", {"mod.py": MODULE, "notes.txt": "todo\n", "staged.txt": "a\n"}
    )
    yield repo
    repo.close()  # ends gitpython's `git cat-file` helpers


def test_accept_commits_only_fixloops_hunk_and_keeps_the_users_work(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir)
    # The user's uncommitted work: a far-away hunk in the same file, an unrelated
    # dirty file, a staged change and an untracked file.
    dirty_mod = MODULE.replace("return x + 7\n", "return x + 7  # mine\n")
    write(root, {"mod.py": dirty_mod, "notes.txt": "todo\nmore\n", "untracked.txt": "u\n"})
    write(root, {"staged.txt": "a\nb\n"})
    repo.index.add(["staged.txt"])
    before_head = repo.head.commit.hexsha
    proposed = dirty_mod.replace("return x + 1\n", "return x + 100\n")

    sha, files = accept(root, {"mod.py": proposed}, {"mod.py": dirty_mod})

    assert files == ["mod.py"]
    commit = repo.commit(sha)
    assert commit.parents[0].hexsha == before_head and repo.head.commit.hexsha == sha
    assert session_of(commit.message) == "s-1"
    assert commit.message.rstrip().endswith("Fixloop-Session: s-1")
    assert list(commit.stats.files) == ["mod.py"]
    # The commit has fixloop's hunk and not the user's.
    assert (commit.tree / "mod.py").data_stream.read().decode() == FIXED
    # The working tree has both; everything else is exactly as the user left it.
    assert (root / "mod.py").read_text() == proposed
    assert (root / "notes.txt").read_text() == "todo\nmore\n"
    assert (root / "untracked.txt").read_text() == "u\n"
    assert set(status(repo).splitlines()) == {
        " M mod.py",
        " M notes.txt",
        "M  staged.txt",
        "?? untracked.txt",
    }
    assert "# mine" in repo.git.diff("mod.py") and "+ 100" not in repo.git.diff("mod.py")


def test_conflicting_dirty_hunk_is_refused_and_nothing_changes(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir)
    dirty_mod = MODULE.replace("return x + 1\n", "return x + 1  # mine\n")
    write(root, {"mod.py": dirty_mod})
    head, tree_status = repo.head.commit.hexsha, status(repo)
    # Proposed against HEAD's content (e.g. the user edited after the snapshot) -> overlap.
    with pytest.raises(WorkspaceError, match=r"overlaps .*mod\.py first") as info:
        accept(root, {"mod.py": FIXED}, {"mod.py": MODULE})
    assert "Nothing was changed" in str(info.value)
    assert repo.head.commit.hexsha == head and status(repo) == tree_status
    assert (root / "mod.py").read_text() == dirty_mod


def test_proposal_touching_the_users_dirty_lines_is_refused(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir)
    dirty_mod = MODULE.replace("return x + 1\n", "return x + 1  # mine\n")
    write(root, {"mod.py": dirty_mod})
    proposed = dirty_mod.replace("return x + 1  # mine\n", "return x + 100  # mine\n")
    with pytest.raises(WorkspaceError, match="uncommitted changes in the same lines"):
        accept(root, {"mod.py": proposed}, {"mod.py": dirty_mod})
    assert (root / "mod.py").read_text() == dirty_mod


def test_undo_restores_the_tree_and_keeps_dirty_work(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir)
    first = repo.head.commit.hexsha
    sha, _ = accept(
        root,
        {"mod.py": FIXED, "new_helper.py": "X = 1\n"},
        {"mod.py": MODULE, "new_helper.py": None},
    )
    write(root, {"notes.txt": "todo\nlater\n"})
    undone = undo(root)
    assert (undone.sha, undone.session_id) == (sha, "s-1")
    assert sorted(undone.files) == ["mod.py", "new_helper.py"]
    assert repo.head.commit.hexsha == first
    assert (root / "mod.py").read_text() == MODULE and not (root / "new_helper.py").exists()
    assert status(repo) == " M notes.txt"
    with pytest.raises(WorkspaceError, match="is not a fixloop commit"):
        undo(root)


def test_undo_refuses_once_fixloops_commit_is_not_head(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir)
    accept(root, {"mod.py": FIXED}, {"mod.py": MODULE})
    write(root, {"notes.txt": "done\n"})
    repo.index.add(["notes.txt"])
    user_head = repo.index.commit("user's own commit").hexsha
    with pytest.raises(WorkspaceError, match="only reverts fixloop's last commit"):
        undo(root)
    assert repo.head.commit.hexsha == user_head


def test_undo_refuses_when_the_user_changed_fixloops_lines(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir)
    sha, _ = accept(root, {"mod.py": FIXED}, {"mod.py": MODULE})
    edited = FIXED.replace("x + 100", "x + 101")
    write(root, {"mod.py": edited})
    with pytest.raises(WorkspaceError, match=r"changed lines in mod\.py"):
        undo(root)
    assert repo.head.commit.hexsha == sha and (root / "mod.py").read_text() == edited


def test_harvest_finds_a_follow_up_fix_of_fixloops_lines(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir)
    sha, _ = accept(root, {"mod.py": FIXED}, {"mod.py": MODULE}, sid="sess-42")
    # An unrelated commit, then one that touches other lines of the same file (not a fix
    # of fixloop's work), then the user's real correction of fixloop's line.
    write(root, {"notes.txt": "x\n"})
    repo.index.add(["notes.txt"])
    repo.index.commit("notes")
    write(root, {"mod.py": FIXED.replace("x + 6", "x + 60")})
    repo.index.add(["mod.py"])
    repo.index.commit("tweak f6")
    final = FIXED.replace("x + 6", "x + 60").replace("return x + 100", "return x + 1 if x else 0")
    write(root, {"mod.py": final})
    repo.index.add(["mod.py"])
    fix = repo.index.commit("fix fixloop's f1").hexsha

    [found] = harvest_in(root, window=5)
    assert (found.session_id, found.fixloop_sha, found.fix_sha, found.kind) == (
        "sess-42",
        sha,
        fix,
        "follow-up",
    )
    c = found.correction
    assert c.source == "harvest" and c.commit == fix
    assert c.proposed == {"mod.py": FIXED} and c.final == {"mod.py": final}
    assert "-    return x + 100" in c.diff and "+    return x + 1 if x else 0" in c.diff
    # Outside the window it is not found.
    assert harvest_in(root, window=2) == []


def test_harvest_finds_an_amended_fixloop_commit(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir)
    sha, _ = accept(root, {"mod.py": FIXED}, {"mod.py": MODULE}, sid="sess-7")
    amended = FIXED.replace("x + 100", "x + 99")
    write(root, {"mod.py": amended})
    repo.git.commit("-a", "--amend", "--no-edit")
    [found] = harvest_in(root)
    assert (found.session_id, found.fixloop_sha, found.kind) == ("sess-7", sha, "amend")
    assert found.correction.final == {"mod.py": amended}
    assert found.correction.proposed == {"mod.py": FIXED}


def test_a_staged_change_in_fixloops_file_stays_staged_and_out_of_the_commit(
    repo: git.Repo,
) -> None:
    root = Path(repo.working_tree_dir)
    staged = MODULE.replace("return x + 6\n", "return x + 6  # staged\n")
    write(root, {"mod.py": staged})
    repo.index.add(["mod.py"])
    proposed = staged.replace("return x + 1\n", "return x + 100\n")
    sha, _ = accept(root, {"mod.py": proposed}, {"mod.py": staged})
    assert (repo.commit(sha).tree / "mod.py").data_stream.read().decode() == FIXED
    assert (root / "mod.py").read_text() == proposed
    staged_diff = repo.git.diff("--cached", "mod.py")
    assert "+    return x + 6  # staged" in staged_diff and "x + 100" not in staged_diff
    assert repo.git.diff("mod.py") == ""  # index and working tree agree


def test_outside_git_and_without_identity_the_errors_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(WorkspaceError, match="is not inside a git repository"):
        GitRepo(tmp_path)
    git.Repo.init(tmp_path / "noid", initial_branch="main").close()
    for name, value in {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path),
        "GIT_CONFIG_NOSYSTEM": "1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(WorkspaceError, match=r"git config user\.name"):
        accept(tmp_path / "noid", {"b.py": "B = 1\n"}, {"b.py": None})
    assert not (tmp_path / "noid" / "b.py").exists()


def test_events_are_appended_to_a_session_log_after_a_torn_line(tmp_path: Path) -> None:
    from agent.events import ModelIdentity, SessionStarted, Task, UserRejected
    from agent.session_log import SessionLogWriter, read_session
    from agent.workspace.sessionlog import append_events

    log = tmp_path / "s.jsonl"
    writer = SessionLogWriter(log)
    header = SessionStarted(
        session_id="s",
        fixloop_version="0",
        task=Task(text="t"),
        model=ModelIdentity(name="m", backend="scripted"),
    )
    writer.write(header)
    writer.write(UserRejected(turn=1, reason="first"))
    writer.close()
    inode = log.stat().st_ino
    with open(log, "a", encoding="utf-8") as fh:
        fh.write('{"type": "user_rejec')  # a crash mid-line
    append_events(log, [UserRejected(turn=1, reason="undone")])
    record = read_session(log)
    assert not record.torn_tail and log.stat().st_ino == inode
    assert [(e.seq, e.reason) for e in record.events] == [(1, "first"), (2, "undone")]


# ---------------------------------------------------------------- undo: only fixloop's own commit
def test_undo_refuses_an_amended_fixloop_commit_and_keeps_the_users_work(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir)
    made, _ = accept(root, {"mod.py": FIXED}, {"mod.py": MODULE})
    # The user folds their own work into fixloop's commit (the trailer stays in the message).
    mine = FIXED.replace("return x + 6\n", "return x + 6  # mine\n")
    write(root, {"mod.py": mine, "notes.txt": "todo\nmine too\n"})
    repo.git.commit("-a", "--amend", "--no-edit")
    amended = repo.head.commit.hexsha
    assert session_of(repo.head.commit.message) == "s-1" and amended != made
    with pytest.raises(WorkspaceError) as info:
        undo(root)
    message = str(info.value)
    assert f"HEAD {amended[:10]} is not the commit fixloop made ({made[:10]})" in message
    assert "amended" in message and "git revert" in message and "Nothing was changed" in message
    assert repo.head.commit.hexsha == amended and status(repo) == ""
    assert (root / "mod.py").read_text() == mine
    assert (root / "notes.txt").read_text() == "todo\nmine too\n"


def test_undo_refuses_a_commit_that_only_carries_a_fixloop_trailer(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir)
    # The user's own commit whose message carries the trailer (copied from a fixloop
    # commit, or a session that is not in the logs): no session log records making it.
    write(root, {"mod.py": FIXED})
    repo.index.add(["mod.py"])
    theirs = repo.index.commit("my fix\n\nFixloop-Session: s-unknown\n").hexsha
    with pytest.raises(WorkspaceError) as info:
        undo(root)
    message = str(info.value)
    assert "no fixloop session log records making it" in message and "s-unknown" in message
    assert "git revert" in message
    assert repo.head.commit.hexsha == theirs and (root / "mod.py").read_text() == FIXED
    # A session that exists but logged a different commit: refused too.
    made, _ = accept(root, {"mod.py": FIXED.replace("x + 2\n", "x + 200\n")}, {"mod.py": FIXED})
    write(root, {"notes.txt": "copied\n"})
    repo.index.add(["notes.txt"])
    copy = repo.index.commit(repo.head.commit.message).hexsha  # same message, same trailer
    with pytest.raises(WorkspaceError, match=rf"HEAD {copy[:10]} is not the commit fixloop made"):
        undo(root)
    assert repo.head.commit.hexsha == copy
    assert (root / "notes.txt").read_text() == "copied\n"
    assert repo.head.commit.parents[0].hexsha == made


# ---------------------------------------------------------------- line endings
CRLF_MODULE = MODULE.replace("\n", "\r\n")
CRLF_FIXED = FIXED.replace("\n", "\r\n")


def test_accept_keeps_crlf_in_the_commit_and_the_working_tree(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {})
    root = Path(repo.working_tree_dir)
    (root / "mod.py").write_bytes(CRLF_MODULE.encode())
    repo.index.add(["mod.py"])
    repo.index.commit("crlf")
    sha, _ = accept(root, {"mod.py": CRLF_FIXED}, {"mod.py": CRLF_MODULE})
    assert (repo.commit(sha).tree / "mod.py").data_stream.read() == CRLF_FIXED.encode()
    assert (root / "mod.py").read_bytes() == CRLF_FIXED.encode()
    assert status(repo) == ""
    undo(root)
    assert (root / "mod.py").read_bytes() == CRLF_MODULE.encode() and status(repo) == ""
    repo.close()


# ---------------------------------------------------------------- a merge, rebase... in progress
def conflicting_branches(repo: git.Repo) -> Path:
    root = Path(repo.working_tree_dir)
    repo.git.checkout("-q", "-b", "other")
    write(root, {"notes.txt": "theirs\n"})
    repo.git.commit("-qam", "theirs")
    repo.git.checkout("-q", "main")
    write(root, {"notes.txt": "ours\n"})
    repo.git.commit("-qam", "ours")
    return root


def test_a_merge_in_progress_is_refused_by_accept_and_undo(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir)
    accept(root, {"mod.py": FIXED}, {"mod.py": MODULE})
    conflicting_branches(repo)
    with pytest.raises(git.GitCommandError):
        repo.git.merge("other")
    head, tree_status = repo.head.commit.hexsha, status(repo)
    for action in (
        lambda: accept(root, {"mod.py": MODULE}, {"mod.py": FIXED}),
        lambda: undo(root),
    ):
        with pytest.raises(WorkspaceError) as info:
            action()
        message = str(info.value)
        assert "a merge is in progress" in message and "git merge --abort" in message
        assert repo.head.commit.hexsha == head and status(repo) == tree_status


def test_a_rebase_in_progress_is_named(repo: git.Repo) -> None:
    root = conflicting_branches(repo)
    with pytest.raises(git.GitCommandError):
        repo.git.rebase("other")
    with GitRepo(root) as gr, pytest.raises(WorkspaceError) as info:
        gr.require_no_operation_in_progress()
    assert "a rebase is in progress" in str(info.value)
    assert "git rebase --abort" in str(info.value)


@pytest.mark.parametrize(
    ("marker", "state", "fix"),
    [
        ("MERGE_HEAD", "a merge", "git merge --abort"),
        ("rebase-merge/", "a rebase", "git rebase --abort"),
        ("rebase-apply/", "a rebase", "git rebase --abort"),
        ("CHERRY_PICK_HEAD", "a cherry-pick", "git cherry-pick --abort"),
        ("REVERT_HEAD", "a revert", "git revert --abort"),
        ("BISECT_LOG", "a bisect", "git bisect reset"),
    ],
)
def test_every_unfinished_git_operation_is_refused(
    repo: git.Repo, marker: str, state: str, fix: str
) -> None:
    git_dir = Path(repo.git_dir)
    if marker.endswith("/"):
        (git_dir / marker).mkdir()
    else:
        (git_dir / marker).write_text(repo.head.commit.hexsha + "\n")
    root = Path(repo.working_tree_dir)
    with pytest.raises(WorkspaceError) as info:
        accept(root, {"mod.py": FIXED}, {"mod.py": MODULE})
    message = str(info.value)
    assert f"{state} is in progress" in message and fix in message
    assert "Nothing was changed" in message
    assert (root / "mod.py").read_text() == MODULE and status(repo) == ""
