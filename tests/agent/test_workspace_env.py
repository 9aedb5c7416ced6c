"""A real repository with a failing pytest test, repaired by the agent (scripted backend).

Everything is real but the model: the git repository, the scratch copy, the sandboxed
pytest runs, the session log, the commit, and `fixloop undo` / `accept --edited` /
`harvest` through the CLI.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import git
import pytest
from typer.testing import CliRunner

from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from agent.environment import FormatProblem
from agent.events import (
    CodeProposed,
    Committed,
    Correction,
    EpisodeFinished,
    ErrorRaised,
    ExecFinished,
    FormatError,
    Task,
    TaskKind,
    UserRejected,
)
from agent.session import AgentSession
from agent.session_log import read_session
from agent.workspace import WorkspaceEnv
from fixloop.cli import app

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "offbyone_repo"
# The venv's heavy pytest plugins (snapshot testing, asyncio) are not needed by the fixture
# and cost seconds per run on a loaded machine.
TEST_CMD = f"{sys.executable} -m pytest -q " + " ".join(
    f"-p no:{name}" for name in ("textual-snapshot", "syrupy", "asyncio", "anyio")
)
BUGGY = "    return list(range(start, stop))\n"

NO_MATCH = (
    "ranges.py\n```python\n<<<<<<< SEARCH\n    return range(start, stop)\n=======\n"
    "    return range(start, stop + 1)\n>>>>>>> REPLACE\n```"
)
WRONG_FIX = (
    "The range is too short.\n\nranges.py\n```python\n<<<<<<< SEARCH\n" + BUGGY + "=======\n"
    "    return list(range(start, stop + 2))\n>>>>>>> REPLACE\n```"
)
RIGHT_FIX = (
    "`range` excludes its end, so add one.\n\nranges.py\n```python\n<<<<<<< SEARCH\n"
    "    return list(range(start, stop + 2))\n=======\n"
    "    return list(range(start, stop + 1))\n>>>>>>> REPLACE\n```"
)


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


@pytest.fixture
def user_repo(tmp_path: Path) -> Iterator[git.Repo]:
    """The fixture as a user's repository: committed, plus uncommitted work of the user's."""
    root = tmp_path / "offbyone"
    shutil.copytree(FIXTURE, root)
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "Test User")
        cfg.set_value("user", "email", "test@example.com")
    repo.index.add(["ranges.py", "tests/test_ranges.py", "README.md"])
    repo.index.commit("initial")
    (root / "README.md").write_text((root / "README.md").read_text() + "\nMy notes.\n")
    (root / "scratchpad.txt").write_text("untracked work in progress\n")
    yield repo
    repo.close()  # ends gitpython's `git cat-file` helpers


def settings_for(tmp_path: Path) -> Settings:
    return Settings(sessions_dir=tmp_path / "sessions", max_turns=4, policy="greedy")


def run_session(repo_dir: Path, tmp_path: Path, replies: list[str]) -> AgentSession:
    task = Task(
        text="Make the tests pass: inclusive_range drops its upper end.",
        kind=TaskKind.WORKSPACE,
        workdir=str(repo_dir),
        test_cmd=TEST_CMD,
    )
    env = WorkspaceEnv(repo_dir, TEST_CMD)
    return AgentSession(
        task, ScriptedBackend(replies), settings_for(tmp_path), purpose="solve", env=env
    )


def test_agent_repairs_a_repo_in_a_scratch_copy_then_accept_and_undo(
    user_repo: git.Repo, tmp_path: Path
) -> None:
    root = Path(user_repo.working_tree_dir)
    before, head = snapshot(root), user_repo.head.commit.hexsha
    session = run_session(root, tmp_path, [NO_MATCH, WRONG_FIX, RIGHT_FIX])
    events = list(session.start())

    assert [e.message[:40] for e in events if isinstance(e, FormatError)] == [
        "The SEARCH text for ranges.py does not m"
    ]
    runs = [e.result for e in events if isinstance(e, ExecFinished)]
    assert [r.status.value for r in runs] == ["failed", "passed"]
    assert [r.n_passed for r in runs] == [1, 3] and runs[1].n_tests == 3
    finished = events[-1]
    assert isinstance(finished, EpisodeFinished) and finished.outcome == "passed"
    assert finished.turns == 3
    # The second attempt's SEARCH quoted the first attempt: it built on it.
    proposed = [e for e in events if isinstance(e, CodeProposed)][-1]
    assert "stop + 1" in proposed.code and proposed.code.startswith("ranges.py\n")
    # The first prompt showed the failing test and the module it imports.
    first_prompt = session.backend.calls[0].messages[1].content  # type: ignore[attr-defined]
    assert "tests/test_ranges.py" in first_prompt and "def inclusive_range" in first_prompt
    assert "currently fails" in first_prompt
    # Repair turns ask for file edits, the workspace's format, not a bare python program.
    repair_turn = session.backend.calls[2].messages[-1].content  # type: ignore[attr-defined]
    assert "Find the mistake" in repair_turn and "file's path" in repair_turn
    assert "```python block" not in repair_turn
    # Nothing in the working tree changed before accept.
    assert snapshot(root) == before and user_repo.head.commit.hexsha == head

    accepted = list(session.accept())
    session.close()
    [committed] = [e for e in accepted if isinstance(e, Committed)]
    assert committed.files == ["ranges.py"] and committed.repo == str(root)
    commit = user_repo.head.commit
    assert commit.hexsha == committed.sha and commit.parents[0].hexsha == head
    assert list(commit.stats.files) == ["ranges.py"]
    assert f"Fixloop-Session: {session.session_id}" in commit.message
    assert commit.message.startswith("fixloop: Make the tests pass")
    fixed = before["ranges.py"].decode().replace("stop))", "stop + 1))")
    assert (root / "ranges.py").read_text() == fixed
    after = snapshot(root)
    assert {k: v for k, v in after.items() if k != "ranges.py"} == {
        k: v for k, v in before.items() if k != "ranges.py"
    }
    assert set(user_repo.git.status("--porcelain").splitlines()) == {
        " M README.md",
        "?? scratchpad.txt",
    }
    logged = read_session(session.log_path).of_type(Committed)
    assert [c.sha for c in logged] == [commit.hexsha]

    result = CliRunner().invoke(
        app, ["undo", "--repo", str(root), "--sessions-dir", str(tmp_path / "sessions")]
    )
    assert result.exit_code == 0, result.output
    assert snapshot(root) == before and user_repo.head.commit.hexsha == head
    assert read_session(session.log_path).of_type(UserRejected)[-1].reason.startswith("undone")
    again = CliRunner().invoke(app, ["undo", "--repo", str(root)])
    assert again.exit_code == 1 and "is not a fixloop commit" in again.output


def test_accept_edited_logs_the_users_correction_and_harvest_the_follow_up(
    user_repo: git.Repo, tmp_path: Path
) -> None:
    root = Path(user_repo.working_tree_dir)
    sessions = str(tmp_path / "sessions")
    session = run_session(root, tmp_path, [WRONG_FIX, RIGHT_FIX])
    assert list(session.start())[-1].outcome == "passed"  # type: ignore[union-attr]
    session.close()
    # The user applies the proposal their own way (a docstring tweak on top) and accepts.
    mine = (
        (root / "ranges.py")
        .read_text()
        .replace("stop))", "stop + 1))")
        .replace("both ends included.", "both ends included (stop too).")
    )
    (root / "ranges.py").write_text(mine)
    runner = CliRunner()
    result = runner.invoke(
        app, ["accept", "--edited", "--repo", str(root), "--sessions-dir", sessions]
    )
    assert result.exit_code == 0, result.output
    assert "logged as a correction" in result.output
    commit = user_repo.head.commit
    assert (commit.tree / "ranges.py").data_stream.read().decode() == mine
    assert list(commit.stats.files) == ["ranges.py"]
    [correction] = read_session(session.log_path).of_type(Correction)
    assert correction.source == "accept_edited" and correction.commit == commit.hexsha
    assert correction.final == {"ranges.py": mine}
    assert '+    """The integers from start to stop, both ends included (stop too)."""' in (
        correction.diff
    )
    # Later the user fixes fixloop's line again in an ordinary commit: harvest finds it.
    (root / "ranges.py").write_text(mine.replace("stop + 1))", "stop + 1, 1))"))
    user_repo.index.add(["ranges.py"])
    fix = user_repo.index.commit("use an explicit step").hexsha
    result = runner.invoke(app, ["harvest", "--repo", str(root), "--sessions-dir", sessions])
    assert result.exit_code == 0, result.output
    assert "follow-up" in result.output and "[logged]" in result.output
    corrections = read_session(session.log_path).of_type(Correction)
    assert [c.source for c in corrections] == ["accept_edited", "harvest"]
    assert corrections[-1].commit == fix
    rerun = runner.invoke(app, ["harvest", "--repo", str(root), "--sessions-dir", sessions])
    assert "[already logged]" in rerun.output
    assert len(read_session(session.log_path).of_type(Correction)) == 2


def test_outside_git_it_works_in_a_scratch_workspace_and_says_so(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(FIXTURE, plain)
    before = snapshot(plain)
    # What Qwen2.5-Coder-1.5B really sent for this repository: only the function it changed,
    # here also without the path line. It is taken as ranges.py (the one file to edit) and
    # spliced into it, so `chunks` is kept.
    partial = (
        'Here is the fix:\n```python\n"""Integer range helpers."""\n\n\n'
        "def inclusive_range(start: int, stop: int) -> list[int]:\n"
        '    """The integers from start to stop, both ends included."""\n'
        "    return list(range(start, stop + 1))  # Fixed the range to include the stop value\n"
        "```"
    )
    session = run_session(plain, tmp_path, [partial])
    env = session.env
    assert isinstance(env, WorkspaceEnv)
    assert "not a git repository" in env.notice and str(env.scratch.dir) in env.notice
    assert list(session.start())[-1].outcome == "passed"  # type: ignore[union-attr]
    accepted = list(session.accept())
    session.close()
    assert not any(isinstance(e, Committed) for e in accepted)
    assert snapshot(plain) == before
    kept = (env.scratch.dir / "ranges.py").read_text()
    assert "stop + 1" in kept and "def chunks" in kept
    assert "accepted files are in the scratch workspace" in env.notice
    env.scratch.close(force=True)


def test_editing_an_existing_test_is_refused_unless_the_user_named_it(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(FIXTURE, plain)
    cheat = "tests/test_ranges.py\n```python\ndef test_nothing():\n    pass\n```"
    env = WorkspaceEnv(plain, TEST_CMD)
    try:
        env.prompt(Task(text="fix the range", kind=TaskKind.WORKSPACE))
        with pytest.raises(FormatProblem, match="Do not change the existing test"):
            env.parse(cheat)
        new_test = "tests/test_more.py\n```python\ndef test_more():\n    assert True\n```"
        assert env.parse(new_test).code.startswith("tests/test_more.py")
    finally:
        env.scratch.close(force=True)
    named = WorkspaceEnv(plain, TEST_CMD, files=["tests/test_ranges.py"])
    try:
        assert "test_nothing" in named.parse(cheat).code
    finally:
        named.scratch.close(force=True)


def test_a_conflicting_dirty_hunk_is_refused_then_fixloop_accept_commits_from_the_log(
    user_repo: git.Repo, tmp_path: Path
) -> None:
    root = Path(user_repo.working_tree_dir)
    head = user_repo.head.commit.hexsha
    session = run_session(root, tmp_path, [RIGHT_FIX.replace("stop + 2", "stop")])
    assert list(session.start())[-1].outcome == "passed"  # type: ignore[union-attr]
    # While the user looked at the proposal, they edited the very line it changes.
    original = (root / "ranges.py").read_text()
    mine = original.replace(BUGGY, "    return list(range(start, stop))  # why empty?\n")
    (root / "ranges.py").write_text(mine)
    accepted = list(session.accept())
    session.close()
    [error] = [e for e in accepted if isinstance(e, ErrorRaised)]
    assert error.where == "accept" and error.message.startswith("Refusing to accept")
    assert "ranges.py" in error.message and "Nothing was changed" in error.message
    assert user_repo.head.commit.hexsha == head and (root / "ranges.py").read_text() == mine
    # The user drops their edit and accepts the logged proposal from the command line.
    (root / "ranges.py").write_text(original)
    result = CliRunner().invoke(
        app,
        [
            "accept",
            session.session_id[:15],
            "--repo",
            str(root),
            "--sessions-dir",
            str(tmp_path / "sessions"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["sha"] == user_repo.head.commit.hexsha and payload["files"] == ["ranges.py"]
    assert "stop + 1" in (root / "ranges.py").read_text()
    assert read_session(session.log_path).of_type(Committed)[-1].sha == payload["sha"]
    assert set(user_repo.git.status("--porcelain").splitlines()) == {
        " M README.md",
        "?? scratchpad.txt",
    }


def test_edits_through_a_symlink_out_of_the_repository_are_refused(
    user_repo: git.Repo, tmp_path: Path
) -> None:
    root, outside = Path(user_repo.working_tree_dir), tmp_path / "outside"
    outside.mkdir()
    (root / "docs").symlink_to(outside, target_is_directory=True)
    user_repo.index.add(["docs"])
    user_repo.index.commit("docs live elsewhere")
    env = WorkspaceEnv(root, TEST_CMD)
    try:
        assert (env.scratch.dir / "docs").is_symlink()
        with pytest.raises(FormatProblem, match="leads outside"):
            env.parse("docs/evil.py\n```python\nX = 1\n```")
    finally:
        env.close()
    assert list(outside.iterdir()) == []


@pytest.mark.slow
def test_a_real_model_works_on_the_repository_without_touching_it(
    user_repo: git.Repo, tmp_path: Path, smollm_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SmolLM2-135M cannot be relied on to fix the bug; the episode must still be sound."""
    root = Path(user_repo.working_tree_dir)
    before, head = snapshot(root), user_repo.head.commit.hexsha
    monkeypatch.setenv("FIXLOOP_SESSIONS_DIR", str(tmp_path / "sessions"))
    result = CliRunner().invoke(
        app,
        [
            "solve",
            "Make the failing tests pass.",
            "--repo",
            str(root),
            "--test-cmd",
            TEST_CMD,
            "--model",
            "smollm2-135m",
            "--max-turns",
            "1",
            "--max-tokens",
            "64",
            "--json",
        ],
    )
    assert result.exit_code in (0, 1), result.output
    out = json.loads(result.stdout)
    assert out["outcome"] in ("passed", "failed") and out["turns"] == 1
    record = read_session(Path(out["log_path"]))
    [prompt] = [e for e in record.events if e.type == "prompt_sent"]
    assert "tests/test_ranges.py" in prompt.messages[-1].content
    assert prompt.prompt_tokens is not None and prompt.prompt_tokens < 4096 - 64
    assert any(e.type in ("exec_finished", "format_error") for e in record.events)
    assert snapshot(root) == before and user_repo.head.commit.hexsha == head


def test_a_huge_plain_directory_is_refused_before_copying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.workspace import WorkspaceError, scratch

    monkeypatch.setattr(scratch, "MAX_PLAIN_FILES", 3)
    for i in range(5):
        (tmp_path / f"f{i}.txt").write_text("x")
    with pytest.raises(WorkspaceError, match="holds more than 3 files"):
        WorkspaceEnv(tmp_path, TEST_CMD)


# ------------------------------------------------------- line endings, unfinished git state
CRLF_SOURCE = (
    '"""Integer range helpers."""\r\n\r\n\r\n'
    "def inclusive_range(start, stop):\r\n"
    "    return list(range(start, stop))\r\n\r\n\r\n"
    "def chunks(xs, n):\r\n"
    "    return [xs[i : i + n] for i in range(0, len(xs), n)]\r\n"
)
# The test command checks the bytes of the scratch copy it runs in: every line ends in CRLF.
CHECK_CRLF = (
    "import sys\n"
    "data = open('ranges.py', 'rb').read()\n"
    "ok = b'stop + 1' in data and data.count(b'\\n') == data.count(b'\\r\\n') == 9\n"
    "sys.exit(0 if ok else 1)\n"
)


def crlf_repo(root: Path) -> git.Repo:
    root.mkdir()
    (root / "ranges.py").write_bytes(CRLF_SOURCE.encode())
    (root / "check.py").write_text(CHECK_CRLF)
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "Test User")
        cfg.set_value("user", "email", "test@example.com")
    repo.index.add(["ranges.py", "check.py"])
    repo.index.commit("initial")
    return repo


@pytest.mark.parametrize(
    "reply",
    [
        "ranges.py\n```python\n<<<<<<< SEARCH\n    return list(range(start, stop))\n=======\n"
        "    return list(range(start, stop + 1))\n>>>>>>> REPLACE\n```",
        "ranges.py\n```python\n"
        + CRLF_SOURCE.replace("\r\n", "\n").replace("stop))", "stop + 1))")
        + "```",
    ],
    ids=["search-replace", "whole-file"],
)
def test_a_one_line_fix_to_a_crlf_file_keeps_crlf(tmp_path: Path, reply: str) -> None:
    root = tmp_path / "crlf"
    repo = crlf_repo(root)
    test_cmd = f"{sys.executable} check.py"
    env = WorkspaceEnv(root, test_cmd)
    task = Task(text="include stop", kind=TaskKind.WORKSPACE, workdir=str(root), test_cmd=test_cmd)
    try:
        env.prompt(task)
        proposal = env.parse(reply)
        assert "\r" not in proposal.code  # the logged rendering is plain text
        result = env.execute(proposal, task)
        assert result.passed, result.stdout.text + result.stderr.text
        committed = env.accept(proposal, "s-crlf")
    finally:
        env.close()
    fixed = CRLF_SOURCE.replace("stop))", "stop + 1))").encode()
    assert committed is not None
    assert (repo.commit(committed.sha).tree / "ranges.py").data_stream.read() == fixed
    assert (root / "ranges.py").read_bytes() == fixed
    assert repo.git.status("--porcelain") == ""
    repo.close()


def test_a_merge_in_progress_is_refused_before_any_model_call(
    user_repo: git.Repo, tmp_path: Path
) -> None:
    root = Path(user_repo.working_tree_dir)
    user_repo.git.checkout("-q", "-b", "other")
    (root / "ranges.py").write_text("THEIRS = 1\n")
    user_repo.git.commit("-qm", "theirs", "--", "ranges.py")
    user_repo.git.checkout("-q", "main")
    (root / "ranges.py").write_text("OURS = 1\n")
    user_repo.git.commit("-qm", "ours", "--", "ranges.py")
    with pytest.raises(git.GitCommandError):
        user_repo.git.merge("other")
    backend = ScriptedBackend([RIGHT_FIX])
    task = Task(text="fix it", kind=TaskKind.WORKSPACE, workdir=str(root), test_cmd=TEST_CMD)
    with pytest.raises(RuntimeError) as info:
        AgentSession(task, backend, settings_for(tmp_path), purpose="solve")
    assert "a merge is in progress" in str(info.value)
    assert "git merge --abort" in str(info.value)
    assert backend.calls == []
    # `fixloop solve` refuses before it even loads the model (this one does not exist).
    result = CliRunner().invoke(
        app,
        ["solve", "fix it", "--repo", str(root), "--test-cmd", "true", "--model", "/no/m.gguf"],
    )
    assert result.exit_code == 2, result.output
    assert "a merge is in progress" in result.output and "does not exist" not in result.output


def test_fixloop_accept_from_the_log_keeps_crlf(tmp_path: Path) -> None:
    root = tmp_path / "crlf"
    repo = crlf_repo(root)
    test_cmd = f"{sys.executable} check.py"
    task = Task(text="include stop", kind=TaskKind.WORKSPACE, workdir=str(root), test_cmd=test_cmd)
    reply = (
        "ranges.py\n```python\n<<<<<<< SEARCH\n    return list(range(start, stop))\n=======\n"
        "    return list(range(start, stop + 1))\n>>>>>>> REPLACE\n```"
    )
    session = AgentSession(task, ScriptedBackend([reply]), settings_for(tmp_path), purpose="solve")
    assert list(session.start())[-1].outcome == "passed"  # type: ignore[union-attr]
    session.close()
    result = CliRunner().invoke(
        app, ["accept", "--repo", str(root), "--sessions-dir", str(tmp_path / "sessions")]
    )
    assert result.exit_code == 0, result.output
    fixed = CRLF_SOURCE.replace("stop))", "stop + 1))").encode()
    assert (repo.head.commit.tree / "ranges.py").data_stream.read() == fixed
    assert (root / "ranges.py").read_bytes() == fixed and repo.git.status("--porcelain") == ""
    repo.close()
