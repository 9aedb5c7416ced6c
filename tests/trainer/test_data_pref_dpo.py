"""`fixloop data build` writes preference DPO pairs from sessions with a preference active:
same prompt, both programs pass the task's tests, one follows the preference and one not."""

from __future__ import annotations

from pathlib import Path

from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from agent.events import Task
from agent.preferences import PreferenceStore
from agent.session import AgentSession
from tests.agent.test_preferences_loop import COMPLIES, PREF, TASK, VIOLATES
from tests.trainer.data_support import read_jsonl
from trainer.data.build import BuildOptions, build

WRONG = "```python\ndef join_path(a, b):\n    return a + b\n```\n"  # fails the tests
ALSO_COMPLIES = (
    "```python\nfrom pathlib import PurePosixPath as P\n\n"
    "def join_path(a, b):\n    return (P(a) / b).as_posix()\n```\n"
)


def solve(cfg: Settings, replies: list[str], task: Task = TASK) -> None:
    session = AgentSession(task, ScriptedBackend(replies), cfg, purpose="solve")
    list(session.start())


def test_pairs_follow_and_break_the_preference_at_the_same_prompt(tmp_path: Path) -> None:
    cfg = Settings(data_dir=tmp_path / "data", sessions_dir=tmp_path / "sessions", max_turns=3)
    PreferenceStore.for_data_dir(cfg.data_dir).add(PREF.text, PREF.version())
    solve(cfg, [VIOLATES, COMPLIES])  # a pair: turn 1 breaks it, turn 2 follows it
    solve(cfg, [WRONG, COMPLIES])  # no pair: the failing attempt never passed the tests
    solve(cfg, [ALSO_COMPLIES])  # another compliant program at the same prompt
    other = TASK.model_copy(update={"text": TASK.text + " Return a string."})
    solve(cfg, [COMPLIES], other)  # another task, no violation: nothing

    result = build(BuildOptions(sessions=[cfg.sessions_dir], out=tmp_path / "out"))
    rows = read_jsonl(result.files["pref_dpo"])
    assert result.rows["pref_dpo"] == len(rows) == 2  # 2 compliant programs x 1 violating
    assert result.manifest["rows"]["pref_dpo"] == 2
    for row in rows:
        assert row["preference"] == PREF.text
        assert row["prompt"][1]["content"].startswith(TASK.text)
        assert "standing preferences" in row["prompt"][1]["content"]
        assert "os.path.join" in row["rejected"][0]["content"]
        assert "PurePosixPath" in row["chosen"][0]["content"]
        assert row["chosen"][0]["content"].startswith("```python\n")
    assert len({r["chosen"][0]["content"] for r in rows}) == 2


def test_no_preferences_no_pairs(tmp_path: Path) -> None:
    cfg = Settings(sessions_dir=tmp_path / "sessions", data_dir=tmp_path / "data", max_turns=3)
    solve(cfg, [VIOLATES])
    result = build(BuildOptions(sessions=[cfg.sessions_dir], out=tmp_path / "out"))
    assert result.rows["pref_dpo"] == 0 and result.rows["sft"] == 1
