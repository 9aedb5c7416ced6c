"""The failure a model is shown names each frame's local variables.

Found on the real-bug benchmark (issue 20): semver's `match` sliced `'<2.4.0'` from the
wrong place, and the ValueError three frames below it said only `.4.0 is not valid`. The
1.5B model, shown the frames without their values, rewrote the wrong line. With
`--showlocals` the frame of the bug shows `prefix = '<', match_version = '.4.0'`.
"""

from __future__ import annotations

from pathlib import Path

from agent.events import Task, TaskKind
from agent.sandbox.junit import TRACEBACK_LIMIT, _without_context_lines
from agent.workspace import WorkspaceEnv
from agent.workspace.failure import frame_locals

VERSIONS = '''\
"""Version matching, three calls deep like semver's."""


def parse(text):
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{text} is not a version")
    return tuple(int(p) for p in parts)


def compare(left, right):
    a, b = parse(left), parse(right)
    return (a > b) - (a < b)


def match(version, expr):
    prefix = expr[:2]
    if prefix in (">=", "<=", "=="):
        wanted = expr[2:]
    else:
        prefix = prefix[0]
        wanted = expr[2:]
    return compare(version, wanted) in {">": (1,), "<": (-1,)}.get(prefix, (0,))
''' + "".join(f"\n\ndef helper_{i}(x):\n    return x + {i}\n" for i in range(30))

TEST = """\
from versions import match


def test_less_than():
    assert match("2.3.7", "<2.4.0")
"""


TEST_CMD = "python -m pytest -x -q test_versions.py"


def versions_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "versions.py").write_text(VERSIONS)
    (repo / "test_versions.py").write_text(TEST)
    return repo


def test_the_feedback_shows_the_locals_of_the_frame_with_the_bug(tmp_path: Path) -> None:
    repo = versions_repo(tmp_path)
    env = WorkspaceEnv(repo, TEST_CMD)
    try:
        prompt = env.prompt(Task(text="Make the failing test pass.", kind=TaskKind.WORKSPACE))
    finally:
        env.scratch.close(force=True)
    lines = prompt.splitlines()
    frame = next(i for i, ln in enumerate(lines) if "versions.py:" in ln and " in match:" in ln)
    assert lines[frame + 1].strip().startswith("locals:")
    assert "expr = '<2.4.0'" in lines[frame + 1]
    assert "prefix = '<'" in lines[frame + 1]
    assert "wanted = '.4.0'" in lines[frame + 1]
    # The test's frame too (its arguments line is not repeated), and no function reprs.
    test_frame = next(i for i, ln in enumerate(lines) if " in test_less_than:" in ln)
    assert "locals:" not in lines[test_frame + 1] or "<function" not in lines[test_frame + 1]


def test_frame_locals_are_read_per_frame_without_the_arguments_line() -> None:
    report = (
        "left = '2.3.7', right = '<2.4.0'\n\n"
        "    def test_x(left, right):\n"
        ">       assert match(left, right)\n\n"
        "left       = '2.3.7'\n"
        "match      = <function match at 0x7f>\n"
        "right      = '<2.4.0'\n\n"
        "test_x.py:5: \n"
        "_ _ _ _\n"
        "version = '2.3.7', expr = '<2.4.0'\n\n"
        ">       wanted = expr[2:]\n"
        "E       ValueError: .4.0\n\n"
        "expr       = '<2.4.0'\n"
        f"long       = '{'x' * 200}'\n\n"
        "versions.py:20: ValueError"
    )
    (test_path, test_line, test_locals), (path, line, names) = frame_locals(report)
    assert (test_path, test_line, test_locals) == (
        "test_x.py",
        5,
        ["left = '2.3.7'", "right = '<2.4.0'"],
    )
    assert (path, line) == ("versions.py", 20)
    assert names[0] == "expr = '<2.4.0'"
    assert names[1].endswith("...") and len(names[1]) < 100


def test_a_long_traceback_keeps_every_frame_under_the_cap() -> None:
    """`--tb=long` prints each frame's whole function; cut in the middle, the frames between
    were lost. The context lines go first."""
    frames = []
    for i in range(12):
        body = "".join(f"    line_{j} = {j}\n" for j in range(40))
        frames.append(
            f"    def f{i}():\n{body}>       f{i + 1}()\n\nx          = {i}\n\nmod.py:{i + 1}: "
        )
    details = "\n_ _ _\n".join(frames)
    assert len(details) > TRACEBACK_LIMIT
    kept = _without_context_lines(details)
    assert len(kept) < TRACEBACK_LIMIT
    assert [line for _, line, _ in frame_locals(kept)] == list(range(1, 13))


def test_a_failure_in_functions_shows_them_alone_and_asks_for_the_corrected_one(
    tmp_path: Path,
) -> None:
    """Asked for SEARCH/REPLACE blocks beside the file's outline, the 1.5B model copied the
    shown code back unchanged; a failure that points at functions shows those functions alone,
    asks for the bug first and then the corrected function whole (spliced in by name)."""
    from agent.workspace.env import (
        FOCUS_REPLY_INSTRUCTION,
        FOCUS_SYSTEM,
        REPLY_INSTRUCTION,
        SYSTEM,
    )

    repo = versions_repo(tmp_path)
    env = WorkspaceEnv(repo, TEST_CMD)
    try:
        task = Task(text="Make the failing test pass.", kind=TaskKind.WORKSPACE)
        prompt = env.prompt(task)
        assert {p.name for p in env.focus} == {"match", "parse", "compare"}
        assert "The functions the failure passes through" in prompt
        assert "`match` (versions.py, line 16):\n```python\ndef match(version, expr):" in prompt
        assert "helper_3" not in prompt  # no outline of the rest of the file
        assert "Find the bug" in prompt and "SEARCH" not in prompt
        assert env.system_prompt == FOCUS_SYSTEM
        assert env.reply_instruction == FOCUS_REPLY_INSTRUCTION
        fixed = VERSIONS.split("def match")[1].replace(
            "        prefix = prefix[0]\n        wanted = expr[2:]",
            "        prefix = prefix[0]\n        wanted = expr[1:]",
        )
        proposal = env.parse("It slices two characters.\n\n```python\ndef match" + fixed + "```")
        result = env.execute(proposal, task)
        assert result.passed, result
    finally:
        env.scratch.close(force=True)
    # A task on a passing repository has no failure to point at: the context and edit format.
    fixed_module = VERSIONS.replace(
        "wanted = expr[2:]\n    return", "wanted = expr[1:]\n    return"
    )
    (repo / "versions.py").write_text(fixed_module)
    env = WorkspaceEnv(repo, TEST_CMD)
    try:
        prompt = env.prompt(Task(text="Add a docstring to match.", kind=TaskKind.WORKSPACE))
        assert env.focus == [] and env.reply_instruction == REPLY_INSTRUCTION
        assert env.system_prompt == SYSTEM
        assert "SEARCH/REPLACE" in prompt and "Find the bug" not in prompt
    finally:
        env.scratch.close(force=True)


def test_the_session_reads_the_system_prompt_the_first_message_chose(tmp_path: Path) -> None:
    """The system prompt is read after `prompt` (which sets it for a failure in functions)."""
    from agent.backends.scripted import ScriptedBackend
    from agent.config import Settings
    from agent.session import AgentSession
    from agent.workspace.env import FOCUS_SYSTEM

    repo = versions_repo(tmp_path)
    env = WorkspaceEnv(repo, TEST_CMD)
    backend = ScriptedBackend(["versions.py\n```python\ndef helper_0(x):\n    return x\n```"])
    task = Task(text="Make the failing test pass.", kind=TaskKind.WORKSPACE, workdir=str(repo))
    settings = Settings(max_turns=1, sessions_dir=tmp_path / "sessions")
    session = AgentSession(task, backend, settings, purpose="solve", env=env)
    try:
        list(session.start())
    finally:
        env.scratch.close(force=True)
    assert backend.calls[0].messages[0].content == FOCUS_SYSTEM
