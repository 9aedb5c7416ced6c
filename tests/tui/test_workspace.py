"""A workspace task typed in the TUI (`$ test command`): edit, test, accept commits in git."""

from __future__ import annotations

import subprocess
from pathlib import Path

from agent.events import Committed, EpisodeFinished, TaskKind
from agent.session_log import read_session
from tests.tui.conftest import paste, plain, wait_until
from tui.app import FixloopApp
from tui.widgets.transcript import Notice

FIX = (
    "The subtraction is the bug; here is the fixed module.\n\n"
    "calc.py\n```python\ndef add(a, b):\n    return a + b\n```\n"
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n", encoding="utf-8")
    (repo / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n", encoding="utf-8"
    )
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


async def test_workspace_task_refused_then_committed_on_accept(settings, tmp_path: Path) -> None:
    from agent.backends.scripted import ScriptedBackend

    repo = make_repo(tmp_path)
    backend = ScriptedBackend([FIX])
    app = FixloopApp(settings, backend_factory=lambda _s: backend, blink=False, cwd=repo)
    async with app.run_test(size=(100, 40)) as pilot:
        chat = app.screen
        await wait_until(pilot, lambda: chat.model_ready)
        await paste(pilot, "Fix add in calc.py.\n$ python -m pytest -x -q")
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: chat.transcript.outcome is not None and not chat.busy, timeout=60
        )
        assert chat.transcript.outcome == "passed"
        original = "def add(a, b):\n    return a - b\n"
        assert (repo / "calc.py").read_text() == original  # nothing written before accept
        # The user changes the very line fixloop fixed: accepting must refuse, not guess.
        mine = "def add(a, b):\n    return b - a  # mine\n"
        (repo / "calc.py").write_text(mine, encoding="utf-8")
        await pilot.press("a")
        await wait_until(pilot, lambda: not chat.busy, timeout=30, what="the refused accept")
        assert chat.session is not None and chat.cycle_errors
        assert chat.check_action("accept", ()) is True  # it can be accepted again
        assert (repo / "calc.py").read_text() == mine  # nothing written
        # Put the file back and accept again: now it commits.
        git(repo, "checkout", "--", "calc.py")
        await pilot.press("a")
        await wait_until(pilot, lambda: chat.session is None and not chat.busy, timeout=30)
        notes = [plain(n) for n in chat.transcript.query(Notice)]
        assert any(n.startswith("committed ") and "calc.py" in n for n in notes), notes

    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert "Fixloop-Session:" in git(repo, "log", "-1", "--format=%B")
    record = read_session(chat.last_log_path)
    assert record.header.task.kind == TaskKind.WORKSPACE
    assert record.header.task.test_cmd == "python -m pytest -x -q"
    assert record.header.task.workdir == str(repo.resolve())
    assert record.of_type(EpisodeFinished)[-1].outcome == "passed"
    committed = record.of_type(Committed)
    assert len(committed) == 1 and committed[0].files == ["calc.py"]
