"""The real program in a real terminal: tmux drives `.venv/bin/fixloop` on SmolLM2-135M."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.events import EpisodeFinished, ExecFinished, ModelReplied, UserAccepted
from agent.session_log import list_sessions, read_session

FIXLOOP = Path(sys.executable).parent / "fixloop"
TASK = "Write a Python function add(a, b) that returns the sum of a and b."
TEST = "assert add(1, 2) == 3"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(not FIXLOOP.exists(), reason=f"{FIXLOOP} is not installed"),
]


class Tmux:
    """One tmux server (own socket) running one command in a fixed-size window."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def cmd(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        )
        return out.stdout

    def alive(self) -> bool:
        return (
            subprocess.run(
                ["tmux", "-L", self.socket, "has-session", "-t", "t"], capture_output=True
            ).returncode
            == 0
        )

    def screen(self) -> str:
        return self.cmd("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.cmd("send-keys", "-t", "t", *(["-l"] if literal else []), *keys)

    def wait_for(self, what: str, check: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"fixloop exited while waiting for {what}:\n{screen}")
            screen = self.screen()
            if check(screen):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; screen:\n{screen}")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    server = Tmux(f"fixloop-test-{uuid.uuid4().hex[:8]}")
    yield server
    subprocess.run(["tmux", "-L", server.socket, "kill-server"], capture_output=True)


def status_line(screen: str) -> str:
    lines = [line for line in screen.splitlines() if "◆" in line]
    return lines[-1] if lines else ""


def test_real_terminal_episode_on_smollm2(tmux: Tmux, tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    work = tmp_path / "work"
    work.mkdir()
    env = {
        "FIXLOOP_SESSIONS_DIR": str(sessions),
        "FIXLOOP_MAX_TURNS": "1",
        "FIXLOOP_MAX_TOKENS": "160",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
    }
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    rc_file = tmp_path / "rc"
    command = f"env {exports} {FIXLOOP} --model smollm2-135m; echo $? > {rc_file}"
    tmux.cmd("new-session", "-d", "-s", "t", "-x", "100", "-y", "30", "-c", str(work), command)

    tmux.wait_for("the model to load", lambda s: "│  ready" in status_line(s), timeout=120)
    tmux.keys(TASK, literal=True)
    tmux.keys("C-j")
    tmux.keys(TEST, literal=True)
    screen = tmux.wait_for("the typed task", lambda s: TEST in s, timeout=10)
    assert TASK in screen
    tmux.keys("Enter")

    # Tokens stream: some screen shows reply text while the status still says "generating".
    streaming: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        screen = tmux.screen()
        status = status_line(screen)
        if "generating" in status and "tok/s" in status:
            streaming.append(screen)
        if "review" in status:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"no result within 240s; screen:\n{screen}")
    assert streaming, f"never saw tokens while generating; final screen:\n{screen}"
    assert "Attempt 1" in streaming[0]

    # The execution result is on screen.
    assert any(mark in screen for mark in ("passed ·", "failed ·", "error ·", "no usable code"))
    outcome = "passed" if "✓ tests passed" in screen else "other"

    tmux.keys("a")
    tmux.wait_for("accept", lambda s: "accepted" in status_line(s), timeout=30)
    tmux.keys("C-q")
    deadline = time.monotonic() + 30
    while tmux.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tmux.alive(), "fixloop did not quit on ctrl+q"
    assert rc_file.read_text().strip() == "0"

    summaries = list_sessions(sessions)
    assert len(summaries) == 1, summaries
    record = read_session(summaries[0].path)
    assert record.header.model.name == "smollm2-135m"
    assert record.header.model.backend == "llama.cpp"
    assert record.header.task.tests == [TEST]
    assert record.header.cwd == str(work)
    replies = record.of_type(ModelReplied)
    assert replies and replies[0].completion_tokens > 1
    assert record.of_type(ExecFinished)
    finished = record.of_type(EpisodeFinished)
    assert len(finished) == 1
    assert (finished[0].outcome == "passed") == (outcome == "passed")
    assert len(record.of_type(UserAccepted)) == 1
    assert os.path.getsize(summaries[0].path) > 0
