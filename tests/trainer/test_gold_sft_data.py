"""bench/gold_sft_data.py: MBPP train's reference programs as SFT rows, checked in the sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from agent.extract import extract_code
from agent.prompts import SYSTEM, task_prompt
from agent.sandbox.limits import SandboxLimits
from agent.sandbox.sandbox import Sandbox
from evals.suites import load_mbpp
from tests.bench_scripts import load_bench_script
from trainer.train.data import load_examples

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    return load_bench_script("gold_sft_data")


def test_reference_programs_become_the_agents_first_turn_and_pass(tmp_path: Path) -> None:
    rows, failed = _bench().gold_rows(limit=6)
    tasks = {str(t.task_id): t for t in load_mbpp("train")[:6]}
    assert failed == [] and [r["task_id"] for r in rows] == list(tasks)
    sandbox = Sandbox(SandboxLimits(timeout_s=10.0))
    for row in rows:
        task = tasks[row["task_id"]]
        system, user, reply = row["messages"]
        # What the agent sends for this task, so the model learns the turn it will see.
        assert system["content"] == SYSTEM and user["content"] == task_prompt(task)
        code = extract_code(reply["content"])
        assert code is not None and "\t" not in code
        assert sandbox.run_asserts(code, list(task.tests), task.test_setup).passed
        assert row["split"] in ("train", "validation")
    (tmp_path / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = [r for r in rows if r["split"] == "train"]
    assert len(load_examples(tmp_path, "sft")) == len(train)  # reads as a built dataset
