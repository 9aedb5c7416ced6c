"""The real program in a real terminal: tmux drives `.venv/bin/fixloop` on SmolLM2-135M.

It types a task, sees tokens stream and the execution result, edits the code in $EDITOR
(through the edit screen), accepts, quits, and finds the episode in the session log.
"""

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

from agent.events import (
    EpisodeFinished,
    ExecFinished,
    ModelReplied,
    UserAccepted,
    UserEdited,
)
from agent.session_log import list_sessions, read_session

FIXLOOP = Path(sys.executable).parent / "fixloop"
TASK = (
    "Write a Python function fizzbuzz(n) that returns a list of strings for 1..n: "
    "'Fizz' for multiples of 3, 'Buzz' for multiples of 5, 'FizzBuzz' for both, "
    "else the number."
)
TEST = "assert fizzbuzz(5) == ['1', '2', 'Fizz', '4', 'Buzz']"
# What the user's $EDITOR writes over the attempt (run from the edit screen with ctrl+e).
EDITOR_SCRIPT = """#!/bin/sh
cat > "$1" <<'PY'
def fizzbuzz(n):  # fixed in the editor
    words = []
    for i in range(1, n + 1):
        word = ("Fizz" if i % 3 == 0 else "") + ("Buzz" if i % 5 == 0 else "")
        words.append(word or str(i))
    return words
PY
"""

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


def reply_lines(screen: str) -> list[str]:
    """Non-blank transcript lines after the "Attempt 1" header (the streamed reply)."""
    lines = screen.splitlines()
    start = next((i for i, line in enumerate(lines) if "Attempt 1" in line), None)
    if start is None:
        return []
    end = next((i for i, line in enumerate(lines) if line.startswith("╭─ Task")), len(lines))
    return [line for line in lines[start + 1 : end] if line.strip()]


def status_line(screen: str) -> str:
    lines = [line for line in screen.splitlines() if "◆" in line]
    return lines[-1] if lines else ""


def test_real_terminal_episode_on_smollm2(tmux: Tmux, tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    work = tmp_path / "work"
    work.mkdir()
    editor = tmp_path / "editor.sh"
    editor.write_text(EDITOR_SCRIPT, encoding="utf-8")
    editor.chmod(0o755)
    env = {
        "EDITOR": str(editor),
        "VISUAL": str(editor),
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
    # the prompt wraps long lines and grows to show them; a frame caught while it grows can
    # show the last line alone (a CI run failed on one), so wait for both
    tmux.wait_for("the typed task", lambda s: TEST in s and TASK[:40] in s, timeout=10)
    tmux.keys("Enter")

    # Tokens stream: some screen shows reply text while the status still says "generating".
    streaming: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        screen = tmux.screen()
        status = status_line(screen)
        if "generating" in status and reply_lines(screen):
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

    # Edit: `e` opens the code; ctrl+e hands it to $EDITOR (the TUI suspends and resumes);
    # ctrl+s runs the edited code again.
    tmux.keys("e")
    tmux.wait_for("the editor", lambda s: "ctrl+s saves" in s, timeout=10)
    tmux.keys("C-e")
    tmux.wait_for("the $EDITOR result", lambda s: "fixed in the editor" in s, timeout=20)
    tmux.keys("C-s")
    tmux.wait_for("the edit's run", lambda s: "edit passed" in status_line(s), timeout=60)

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
    edited = record.of_type(UserEdited)
    assert len(edited) == 1 and "fixed in the editor" in edited[0].edited
    assert edited[0].result is not None and edited[0].result.passed
    accepted = record.of_type(UserAccepted)
    assert len(accepted) == 1 and accepted[0].edited
    assert "fixed in the editor" in accepted[0].code
    assert os.path.getsize(summaries[0].path) > 0

    # `fixloop replay ID` shows the same session read-only, in the same widgets.
    session_id = record.session_id
    replay = f"env {exports} {FIXLOOP} replay {session_id[:15]}; echo $? > {rc_file}"
    tmux.cmd("new-session", "-d", "-s", "t", "-x", "100", "-y", "30", "-c", str(work), replay)
    screen = tmux.wait_for("the replay", lambda s: "fixed in the editor" in s, timeout=60)
    assert f"Replay {session_id}" in screen and "replay · accepted" in status_line(screen)
    tmux.keys("q")
    deadline = time.monotonic() + 30
    while tmux.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tmux.alive() and rc_file.read_text().strip() == "0"
