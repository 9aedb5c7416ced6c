"""What `fixloop solve` prints: a workspace result as its diff against the user's tree, and a
run without tests as having run cleanly (issue 20, item 5)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.agent.openai_server import CannedOpenAI, serve


def fixloop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fixloop", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


def test_a_workspace_result_is_shown_as_its_diff_against_your_tree(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(Path(__file__).parent.parent / "fixtures" / "offbyone_repo", repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    fix = (
        "ranges.py\n```python\n<<<<<<< SEARCH\n    return list(range(start, stop))\n=======\n"
        "    return list(range(start, stop + 1))\n>>>>>>> REPLACE\n```"
    )
    test_cmd = f"{sys.executable} -m pytest -x -q -p no:cacheprovider"
    with serve(CannedOpenAI([fix])) as server:
        run = fixloop(
            "solve", "Fix inclusive_range.", "--repo", str(repo), "--test-cmd", test_cmd,
            "--base-url", server.url,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "--- change to your tree (turn 1) ---\n--- a/ranges.py\n+++ b/ranges.py\n" in run.stdout
    assert "-    return list(range(start, stop))\n+    return list(range(start, stop + 1))" in (
        run.stdout
    )
    assert "outcome: passed  tests: 3/3" in run.stdout
    assert '"""Integer range helpers."""' not in run.stdout  # a diff, not the whole file


def test_a_program_without_tests_ran_cleanly() -> None:
    with serve(CannedOpenAI(["```python\nprint('hi')\n```"])) as server:
        run = fixloop("solve", "Print hi.", "--base-url", server.url)
    assert run.returncode == 0, run.stderr
    assert "[ran cleanly in " in run.stderr
    assert "outcome: passed  ran cleanly  turns: 1" in run.stdout
