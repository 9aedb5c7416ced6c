"""With a preference active, the loop repairs a violating attempt into a compliant one.

The model is scripted; the task's tests and the preference's verifier really run in the
sandbox. A violation is a failing test named after the preference, so the verdict, the
feedback, the log and the TUI's result panel all carry it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from agent.environment import FunctionEnv
from agent.events import EpisodeFinished, ExecFinished, PromptSent, RepairRequested, Task
from agent.preferences import PreferenceStore
from agent.preferences.env import PreferenceEnv, summary, with_preferences
from agent.preferences.reference import reference
from agent.preferences.verify import VerifierRunner
from agent.sandbox.result import TestStatus
from agent.session import AgentSession
from agent.session_log import read_session

PREF = reference("pathlib_not_os_path")
NAME = f"preference: {PREF.text}"
TASK = Task(
    text="Write a function join_path(a, b) that joins two path parts with a slash.",
    tests=["assert join_path('a', 'b') == 'a/b'", "assert join_path('x', 'y.txt') == 'x/y.txt'"],
)
VIOLATES = "```python\nimport os\n\ndef join_path(a, b):\n    return os.path.join(a, b)\n```\n"
COMPLIES = (
    "```python\nfrom pathlib import PurePosixPath\n\n"
    "def join_path(a, b):\n    return str(PurePosixPath(a) / b)\n```\n"
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    cfg = Settings(
        data_dir=tmp_path / "data",
        sessions_dir=tmp_path / "sessions",
        max_turns=3,
        policy="greedy",
    )
    PreferenceStore.for_data_dir(cfg.data_dir).add(PREF.text, PREF.version())
    return cfg


def run(
    settings: Settings, replies: list[str], purpose: str = "solve"
) -> tuple[AgentSession, list]:
    session = AgentSession(TASK, ScriptedBackend(replies), settings, purpose=purpose)  # type: ignore[arg-type]
    return session, list(session.start())


def test_the_loop_repairs_a_preference_violation(settings: Settings) -> None:
    session, events = run(settings, [VIOLATES, COMPLIES])
    assert isinstance(session.env, PreferenceEnv)
    first_prompt = next(e for e in events if isinstance(e, PromptSent)).messages[1].content
    assert "Also follow these standing preferences of the user:\n- Use pathlib" in first_prompt

    execs = [e for e in events if isinstance(e, ExecFinished)]
    assert len(execs) == 2
    violated = execs[0].result
    assert not violated.passed and violated.status == "failed"
    assert [t.status for t in violated.tests] == ["passed", "passed", "failed"]
    check = violated.tests[-1]
    assert check.name == NAME and "does not follow" in check.message
    assert "[use-pathlib-not-os-path v1]" in check.message
    # the model is told which preference it broke, like a failing test
    assert execs[0].feedback is not None and f"Test: {NAME}" in execs[0].feedback
    repair = next(e for e in events if isinstance(e, RepairRequested))
    assert repair.reason == "exec" and NAME in repair.feedback
    assert f"Rewrite your program so that it follows it: {PREF.text}" in repair.feedback
    assert execs[1].result.passed and summary(execs[1].result) == {PREF.text: "passed"}

    finished = events[-1]
    assert isinstance(finished, EpisodeFinished) and finished.outcome == "passed"
    assert finished.best_turn == 2 and "PurePosixPath" in (finished.final_code or "")
    assert finished.best_passed == finished.n_tests == 3

    # logged: a replay sees the same checks
    record = read_session(session.log_path)
    logged = [e for e in record.events if isinstance(e, ExecFinished)]
    assert [summary(e.result) for e in logged] == [
        {PREF.text: "failed"},
        {PREF.text: "passed"},
    ]
    raw = session.log_path.read_text(encoding="utf-8")
    assert json.dumps(NAME)[1:-1] in raw


def test_the_users_edit_is_checked_too(settings: Settings) -> None:
    session, _ = run(settings, [COMPLIES])
    edited = list(session.edit(VIOLATES.split("```python\n")[1].split("```")[0]))
    assert edited[-1].result is not None and not edited[-1].result.passed
    assert edited[-1].result.tests[-1].name == NAME


@pytest.mark.parametrize("purpose", ["eval", "replay"])
def test_evaluations_are_not_checked(settings: Settings, purpose: str) -> None:
    session, events = run(settings, [VIOLATES], purpose=purpose)
    assert isinstance(session.env, FunctionEnv)
    assert events[-1].outcome == "passed" and events[-1].n_tests == 2


def test_preferences_can_be_switched_off(settings: Settings) -> None:
    off = settings.model_copy(update={"preferences": False})
    session, events = run(off, [VIOLATES])
    assert isinstance(session.env, FunctionEnv) and events[-1].outcome == "passed"


def test_no_active_preference_means_no_wrapper(settings: Settings) -> None:
    store = PreferenceStore.for_data_dir(settings.data_dir)
    store.set_active(store.all()[0].id, False)
    env = with_preferences(FunctionEnv(), settings, "solve")
    assert type(env) is FunctionEnv


def test_a_broken_preference_file_is_a_notice_not_a_crash(settings: Settings) -> None:
    (settings.data_dir / "preferences" / "broken.json").write_text("{")
    session, events = run(settings, [VIOLATES])
    assert session.env.notice is not None and "preferences not checked" in session.env.notice
    assert events[-1].outcome == "passed"


def test_an_undecided_verifier_is_skipped_never_failed(settings: Settings) -> None:
    store = PreferenceStore.for_data_dir(settings.data_dir)
    pref = store.all()[0]
    raising = PREF.version().model_copy(
        update={"verifier": "def evaluate(code):\n    raise ValueError('confused')\n"}
    )
    store.add_version(pref, raising)
    _, events = run(settings, [VIOLATES])
    result = next(e for e in events if isinstance(e, ExecFinished)).result
    assert result.passed and result.tests[-1].status == TestStatus.SKIPPED
    assert "could not decide" in result.tests[-1].message and "confused" in result.tests[-1].message


def test_the_tui_result_panel_shows_the_preference() -> None:
    from rich.console import Console

    from tui.widgets.exec_result import render_result
    from tui.widgets.exec_result import summary as panel_summary

    env = PreferenceEnv(FunctionEnv(), [_stored_pref()])
    result = env.execute(env.parse(VIOLATES), TASK)
    console = Console(width=200, record=True)
    console.print(render_result(result))
    text = console.export_text()
    assert f"✗ {NAME}" in text and "does not follow" in text
    assert "2/3 tests" in panel_summary(result)


def _stored_pref():
    from agent.preferences import Preference

    return Preference(id="use-pathlib-not-os-path", text=PREF.text, versions=[PREF.version()])


def test_a_violation_names_the_definitions_that_break_it(tmp_path: Path) -> None:
    """Recorded with the 0.5B model (mbpp/518): its function had a docstring, its test
    helper did not, and told only the rule it kept rewriting the function."""
    docstrings = reference("docstrings")
    store = PreferenceStore.for_data_dir(tmp_path)
    store.add(docstrings.text, docstrings.version())
    env = PreferenceEnv(FunctionEnv(), store.active(), VerifierRunner(timeout_s=5))
    code = (
        'def sqrt_root(n):\n    """The square root of n."""\n    return int(n ** 0.5)\n\n\n'
        "def check_sqrt_root():\n    assert sqrt_root(4) == 2\n"
    )
    check = env.check(store.active()[0], code)
    assert check.status == TestStatus.FAILED
    assert "It is broken in `check_sqrt_root` (line 6)." in check.message
    assert "sqrt_root` (line 1)" not in check.message
    assert f"Rewrite your program so that it follows it: {docstrings.text}" in check.message
    # a program that does not parse is not judged against a preference
    broken = env.check(store.active()[0], "def f(:\n")
    assert broken.status == TestStatus.SKIPPED and "does not parse" in broken.message


def test_a_recorded_real_model_session_repairs_a_violation() -> None:
    """The 0.5B model on mbpp/518 with the docstrings preference active (`fixloop solve`,
    2026-12-01): its first program broke the preference in a helper; the loop named it, and
    the program it ended with passes the tests and follows the preference. Replayed from
    the log, through the agent's schema."""
    path = Path(__file__).parents[1] / "fixtures" / "recorded" / "preference-repair-0.5b.jsonl"
    record = read_session(path)
    assert record.header.model.key.startswith("qwen2.5-coder-0.5b:")
    execs = [e for e in record.events if isinstance(e, ExecFinished)]
    text = reference("docstrings").text
    assert summary(execs[0].result) == {text: "failed"}
    assert all(
        t.status == TestStatus.PASSED
        for t in execs[0].result.tests
        if t.name != f"preference: {text}"
    )
    assert execs[-1].result.passed and summary(execs[-1].result) == {text: "passed"}
    finished = record.events[-1]
    assert isinstance(finished, EpisodeFinished) and finished.outcome == "passed"
    assert finished.best_turn == execs[-1].turn > 1
