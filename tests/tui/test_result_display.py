"""What the user sees of a result: a passing program's short output inline, a run without
tests that "ran cleanly", and a workspace attempt as its diff against the user's tree with the
test command's verdict (issue 20, item 5)."""

from __future__ import annotations

from pathlib import Path

from agent.events import EpisodeFinished
from agent.sandbox.result import CapturedText, ExecResult, ExecStatus, TestResult, TestStatus
from tests.tui.conftest import paste, plain, wait_until
from tests.tui.test_workspace import FIX, make_repo
from tui.app import FixloopApp
from tui.widgets.diff_view import DiffView
from tui.widgets.exec_result import ExecResultView, ProgramOutput, inline_output, summary
from tui.widgets.transcript import episode_text


def result(stdout: str = "", tests: int = 0, status: ExecStatus = ExecStatus.PASSED):
    return ExecResult(
        status=status,
        tests=[TestResult(name=f"t{i}", status=TestStatus.PASSED) for i in range(tests)],
        stdout=CapturedText(text=stdout, total_bytes=len(stdout)),
        duration_s=0.05,
    )


def test_a_run_without_tests_ran_cleanly_and_its_short_output_is_inline() -> None:
    assert summary(result("hello\n")) == "✓ ran cleanly · 0.05s"
    assert summary(result(tests=2)) == "✓ passed · 2/2 tests · 0.05s"
    assert inline_output(result("hello\nworld\n")) == "hello\nworld"
    assert inline_output(result("".join(f"{i}\n" for i in range(40)))) is None  # too long
    assert inline_output(result("oops\n", status=ExecStatus.ERROR)) is None  # not passing
    assert inline_output(result("")) is None
    clean = episode_text(EpisodeFinished(outcome="passed", turns=1, n_tests=0))
    assert clean.plain.startswith("✓ ran cleanly")
    tested = episode_text(EpisodeFinished(outcome="passed", turns=1, n_tests=2, best_passed=2))
    assert tested.plain.startswith("✓ tests passed")


async def test_a_passing_programs_output_is_shown_inline(settings) -> None:
    from agent.backends.scripted import ScriptedBackend

    reply = "```python\nprint('hello from the program')\n```"
    backend = ScriptedBackend([reply])
    app = FixloopApp(settings, backend_factory=lambda _s: backend, blink=False)
    async with app.run_test(size=(100, 40)) as pilot:
        chat = app.screen
        await wait_until(pilot, lambda: chat.model_ready)
        await paste(pilot, "Print a greeting.")
        await pilot.press("enter")
        await wait_until(pilot, lambda: chat.transcript.outcome is not None and not chat.busy)
        [view] = chat.transcript.query(ExecResultView)
        assert str(view.title).startswith("✓ ran cleanly")
        [output] = chat.transcript.query(ProgramOutput)
        assert plain(output) == "output\nhello from the program"


async def test_a_workspace_attempt_shows_its_diff_to_your_tree_and_the_verdict(
    settings, tmp_path: Path
) -> None:
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
        [view] = chat.transcript.query(ExecResultView)
        assert str(view.title).startswith("test command: ✓ passed · 1/1 tests")
        [diff] = chat.transcript.query(DiffView)
        assert (
            str(diff.title) == ("diff calc.py (your tree) → calc.py (attempt 1)  +1 -1")
            and not diff.collapsed
        )  # it passed: what accepting would commit, shown open
        assert "-    return a - b\n+    return a + b" in diff.diff
        assert not chat.transcript.query(ProgramOutput)  # pytest's output stays folded
