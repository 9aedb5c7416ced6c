"""`fixloop solve` and `fixloop sessions` as real subprocesses, plus kill -9 durability."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.session_log import list_sessions, read_session, session_files
from tests.agent.openai_server import CannedOpenAI, serve

RIGHT = "```python\ndef rev(s):\n    return s[::-1]\n```"
WRONG = "```python\ndef rev(s):\n    return s\n```"


def fixloop(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fixloop", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )


def sessions_dir() -> Path:
    return Path(os.environ["FIXLOOP_SESSIONS_DIR"])


def test_solve_json_over_http_then_list_and_show() -> None:
    with serve(CannedOpenAI([WRONG, RIGHT])) as server:
        run = fixloop(
            "solve",
            "Reverse the string s.",
            "--base-url",
            server.url,
            "--assert",
            "assert rev('abc') == 'cba'",
            "--assert",
            "assert rev('') == ''",
            "--policy",
            "greedy",
            "--json",
        )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["outcome"] == "passed" and out["turns"] == 2 and out["best_passed"] == 2
    assert out["final_code"] == "def rev(s):\n    return s[::-1]\n"
    log = Path(out["log_path"])
    assert log.is_file() and log.stem == out["session_id"]
    assert log.parent.parent == sessions_dir()
    record = read_session(log)
    assert record.header.purpose == "solve" and record.header.model.backend == "openai"
    assert record.outcome is not None and record.outcome.outcome == "passed"

    listed = fixloop("sessions", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["session_id"] for r in rows] == [out["session_id"]]
    assert rows[0]["outcome"] == "passed" and rows[0]["turns"] == 2

    shown = fixloop("sessions", "show", out["session_id"][:18])
    assert shown.returncode == 0, shown.stderr
    assert "Reverse the string s." in shown.stdout and "== turn 2 ==" in shown.stdout
    assert "feedback (exec)" in shown.stdout and "episode passed" in shown.stdout

    missing = fixloop("sessions", "show", "nope")
    assert missing.returncode == 2 and "no session 'nope'" in missing.stderr


def test_solve_reports_failure_with_exit_1_and_tests_file(tmp_path: Path) -> None:
    tests = tmp_path / "tests_rev.py"
    tests.write_text(
        "import string\nassert rev('ab') == 'ba'\nassert rev(string.digits)[0] == '9'\n"
    )
    with serve(CannedOpenAI([WRONG] * 4)) as server:
        run = fixloop(
            "solve",
            "Reverse the string s.",
            "--base-url",
            server.url,
            "--tests",
            str(tests),
            "--max-turns",
            "2",
        )
    assert run.returncode == 1
    assert "outcome: failed" in run.stdout and "tests: 0/2" in run.stdout
    assert "same program as turn 1" in run.stderr


def test_solve_usage_errors_are_clear(tmp_path: Path) -> None:
    bad = fixloop("solve", "x", "--assert", "assert (", "--base-url", "http://127.0.0.1:9")
    assert bad.returncode == 2 and "is not a Python statement" in bad.stderr
    empty = tmp_path / "t.py"
    empty.write_text("x = 1\n")
    no_tests = fixloop("solve", "x", "--tests", str(empty))
    assert no_tests.returncode == 2 and "no assert statements" in no_tests.stderr
    workspace = fixloop("solve", "x", "--repo", str(tmp_path))
    assert workspace.returncode == 2 and "--repo needs --test-cmd" in workspace.stderr
    down = fixloop("solve", "x", "--base-url", "http://127.0.0.1:9/v1")
    assert down.returncode == 3 and "cannot reach the model server" in down.stderr
    global_flag = fixloop("--base-url", "http://127.0.0.1:9/v1", "solve", "x")
    assert global_flag.returncode == 3 and "127.0.0.1:9/v1" in global_flag.stderr


def test_sessions_schema_is_json_schema() -> None:
    run = fixloop("sessions", "schema")
    assert run.returncode == 0, run.stderr
    schema = json.loads(run.stdout)
    assert "session_started" in json.dumps(schema) and "episode_finished" in json.dumps(schema)
    assert schema["discriminator"]["propertyName"] == "type"


@pytest.mark.slow
def test_end_to_end_episode_with_smollm(smollm_path: Path) -> None:
    run = fixloop(
        "solve",
        "Write a Python function add(a, b) that returns a + b.",
        "--model",
        "smollm2-135m",
        "--assert",
        "assert add(1, 2) == 3",
        "--max-turns",
        "2",
        "--max-tokens",
        "64",
        "--json",
        timeout=300,
    )
    assert run.returncode in (0, 1), run.stderr
    out = json.loads(run.stdout)
    assert out["outcome"] in ("passed", "failed") and out["model"].startswith("smollm2-135m:")
    record = read_session(Path(out["log_path"]))
    types = [e.type for e in record.events]
    assert types[0] == "turn_started" and types[-1] == "episode_finished"
    assert "prompt_sent" in types and "model_replied" in types
    assert record.header.model.gguf_sha256 is not None
    assert "token_delta" not in types


@pytest.mark.slow
def test_kill_9_leaves_a_readable_log(smollm_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fixloop",
            "solve",
            "Write a function f(n) returning the n-th prime number.",
            "--model",
            "smollm2-135m",
            "--assert",
            "assert f(1) == 2",
            "--assert",  # contradicts the first: the episode cannot end early by passing
            "assert f(1) == 3",
            "--max-turns",
            "6",
            "--max-tokens",
            "48",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 120
        log: Path | None = None
        while time.monotonic() < deadline:  # let it get into its second turn
            files = session_files(sessions_dir())
            if files:
                log = files[0]
                if log.read_bytes().count(b'"type":"turn_started"') >= 2:
                    break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "solve ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and log is not None
    data = log.read_bytes()
    complete_lines = data.count(b"\n")
    record = read_session(log)
    assert len(record.events) + 1 == complete_lines  # every complete event, nothing else
    assert record.torn_tail == (not data.endswith(b"\n"))
    assert sum(e.type == "turn_started" for e in record.events) >= 2
    assert record.outcome is None  # the episode never finished
    assert list_sessions(sessions_dir())[0].error is None


def test_solve_workspace_task_accepts_and_commits(tmp_path: Path) -> None:
    """--repo/--test-cmd/--accept drive the git workspace environment end to end."""
    repo = tmp_path / "repo"
    shutil.copytree(Path(__file__).parent.parent / "fixtures" / "offbyone_repo", repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    source = (repo / "ranges.py").read_text()
    fixed = source.replace("range(start, stop)", "range(start, stop + 1)")
    test_cmd = f"{sys.executable} -m pytest -x -q -p no:cacheprovider"
    with serve(CannedOpenAI([f"ranges.py\n```python\n{fixed}```\n"])) as server:
        run = fixloop(
            "solve", "Fix inclusive_range so both ends are included.",
            "--repo", str(repo), "--test-cmd", test_cmd,
            "--base-url", server.url, "--accept", "--json",
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["outcome"] == "passed" and out["committed"]["files"] == ["ranges.py"]
    assert (repo / "ranges.py").read_text() == fixed
    head = subprocess.run(
        ["git", "log", "-1", "--format=%H"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert head.stdout.strip() == out["committed"]["sha"]
    types = [e.type for e in read_session(Path(out["log_path"])).events]
    assert types[-2:] == ["user_accepted", "committed"]


def test_solve_accept_whose_commit_is_refused_exits_non_zero(tmp_path: Path) -> None:
    """Tests pass, but the fix overlaps the user's uncommitted line: no commit, exit 4."""
    repo = tmp_path / "repo"
    shutil.copytree(Path(__file__).parent.parent / "fixtures" / "offbyone_repo", repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    mine = (repo / "ranges.py").read_text().replace("stop))", "stop))  # mine")
    (repo / "ranges.py").write_text(mine)  # the user's uncommitted work, on the buggy line
    fixed = mine.replace("range(start, stop)", "range(start, stop + 1)")
    test_cmd = f"{sys.executable} -m pytest -x -q -p no:cacheprovider"
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    for as_json in (True, False):
        with serve(CannedOpenAI([f"ranges.py\n```python\n{fixed}```\n"])) as server:
            run = fixloop(
                "solve", "Fix inclusive_range so both ends are included.",
                "--repo", str(repo), "--test-cmd", test_cmd,
                "--base-url", server.url, "--accept", *(["--json"] if as_json else []),
            )  # fmt: skip
        assert run.returncode == 4, run.stdout + run.stderr
        assert "not committed: Refusing to accept" in run.stderr
        assert "your uncommitted changes in the same lines" in run.stderr
        assert "fixloop accept" in run.stderr
        if as_json:
            out = json.loads(run.stdout)
            assert out["outcome"] == "passed" and out["committed"] is None
            assert out["errors"][0].startswith("Refusing to accept")
        assert (repo / "ranges.py").read_text() == mine
        now = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout
        assert now == head
