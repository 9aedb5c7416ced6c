"""`fixloop eval --preferences`: compliance of each model's first programs, with flips.

The models are scripted; the tasks' tests and the reference preference's hand-written
verifier really run in the sandbox.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from agent.events import PromptSent, Task
from agent.preferences import PreferenceStore
from agent.preferences.reference import reference
from agent.session_log import read_session, session_files
from evals import report
from evals.errors import EvalError
from evals.runner import run_suite

PREF = reference("pathlib_not_os_path")
TASKS = [
    Task(
        text="Write join_path(a, b) joining two path parts with a slash.",
        tests=["assert join_path('a', 'b') == 'a/b'"],
        task_id="toy/1",
    ),
    Task(
        text="Write base_name(p): the last part of a slash-separated path.",
        tests=["assert base_name('a/b.txt') == 'b.txt'"],
        task_id="toy/2",
    ),
]
OS_JOIN = "```python\nimport os\n\ndef join_path(a, b):\n    return os.path.join(a, b)\n```\n"
PATHLIB_JOIN = (
    "```python\nfrom pathlib import PurePosixPath\n\n"
    "def join_path(a, b):\n    return str(PurePosixPath(a) / b)\n```\n"
)
OS_BASE = "```python\nimport os\n\ndef base_name(p):\n    return os.path.basename(p)\n```\n"
PATHLIB_BASE = (
    "```python\nfrom pathlib import PurePosixPath\n\n"
    "def base_name(p):\n    return PurePosixPath(p).name\n```\n"
)


@pytest.fixture
def cfg(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", sessions_dir=tmp_path / "sessions")
    PreferenceStore.for_data_dir(settings.data_dir).add(PREF.text, PREF.version())
    return settings


def evaluate(cfg: Settings, label: str, replies: list[str], out: Path, prefs: bool = True):
    active = PreferenceStore.for_data_dir(cfg.data_dir).active() if prefs else []
    return run_suite(
        TASKS,
        cfg,
        max_turns=1,
        out_dir=out,
        progress=False,
        backend=ScriptedBackend(replies),
        label=label,
        preferences=active,
    )


def test_compliance_of_first_programs_and_its_flips(cfg: Settings, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    before = evaluate(cfg, "before", [OS_JOIN, OS_BASE], out)
    after = evaluate(cfg, "after", [PATHLIB_JOIN, OS_BASE], out)
    # the tests pass either way: compliance is measured apart from pass@1
    assert before.pass_at_1.count == after.pass_at_1.count == 2
    assert before.compliance[PREF.text].count == 0 and before.compliance[PREF.text].n == 2
    assert after.compliance[PREF.text].count == 1
    assert after.task_followed(PREF.text) == {"toy/1": True, "toy/2": False}

    table = report.table([before, after])
    assert f"follows: {PREF.text}" in table and "1/2 50.0%" in table
    assert f"vs before: follows: {PREF.text}" in table and "+1 / -0" in table
    (item,) = report.comparisons([before, after])
    assert item[f"follows: {PREF.text}"]["only_b"] == ["toy/1"]
    png = report.plot_compliance([before, after], tmp_path / "compliance.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"

    # the model was told the preference, as in the user's own sessions
    log = read_session(session_files(cfg.sessions_dir)[0])
    prompt = next(e for e in log.events if isinstance(e, PromptSent)).messages[1].content
    assert f"standing preferences of the user:\n- {PREF.text}" in prompt
    # last: its sessions join the log directory, and the prompt check above reads the first
    unchecked = evaluate(cfg, "none", [OS_JOIN, OS_BASE], tmp_path / "none", False)
    assert report.plot_compliance([unchecked], tmp_path / "none.png") is None


def test_a_run_without_preferences_reports_none_and_cannot_be_mixed(
    cfg: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    plain = evaluate(cfg, "m", [OS_JOIN, OS_BASE], out, prefs=False)
    assert plain.compliance == {} and "follows" not in report.table([plain])
    with pytest.raises(EvalError, match="preferences"):
        evaluate(cfg, "m", [PATHLIB_JOIN, PATHLIB_BASE], out)
