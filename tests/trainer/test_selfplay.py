"""Self-play tasks: proposals from a scripted model, every filter really executed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import agent.backends
from agent.backends.scripted import ScriptedBackend
from agent.events import Task
from agent.sandbox import Sandbox, SandboxLimits
from agent.sandbox.result import ExecResult, ExecStatus
from evals.suites import load_file
from trainer.data.hygiene import EvalGuard
from trainer.data.selfplay import (
    SelfPlayConfig,
    parse_proposal,
    selfplay,
    stub_for,
    write_tasks,
)

SEEDS = [
    Task(
        text="Write a function to add two numbers.", tests=["assert add(1, 2) == 3"], task_id="s/1"
    ),
    Task(
        text="Write a function to reverse a string.",
        tests=["assert rev('ab') == 'ba'"],
        task_id="s/2",
    ),
    Task(
        text="Write a function to find the maximum of a list.",
        tests=["assert mx([1, 3]) == 3"],
        task_id="s/3",
    ),
]
EVAL = {
    "mbpp-validation": ["Write a function to find the shared elements from the given two lists."]
}


def proposal(text: str, *tests: str) -> str:
    body = "\n".join(tests)
    return f"Task: {text}\nTests:\n```python\n{body}\n```\n"


def solution(code: str) -> str:
    return f"```python\n{code}\n```\n"


SQUARE = proposal(
    "Write a function to square a number.", "assert square(3) == 9", "assert square(-2) == 4"
)
REPLIES = [
    "I would rather not.",  # 0 unparseable
    proposal(
        "Write a function to reverse a string.", "assert rev('ab') == 'ba'", "assert rev('') == ''"
    ),
    proposal(  # 2 an evaluation task, reworded only in case
        "Write a function to find the SHARED elements from the given two lists.",
        "assert shared([1, 2], [2]) == [2]",
        "assert shared([], []) == []",
    ),
    proposal(  # 3 trivial: a stub returning None passes
        "Write a function that clears a list in place.",
        "assert clear([1]) is None",
        "assert clear([]) is None",
    ),
    proposal(  # 4 unsolved: both sampled solutions are wrong
        "Write a function to count the vowels in a string.",
        "assert count_vowels('hello') == 2",
        "assert count_vowels('xyz') == 0",
    ),
    solution("def count_vowels(s):\n    return len(s)"),
    solution("def count_vowels(s):\n    return 0"),
    proposal(  # 5 flaky: the passing solution fails a rerun (see FlakySandbox)
        "Write a function that doubles a number.", "assert double(2) == 4", "assert double(0) == 0"
    ),
    solution("def double(x):\n    return 2 * x  # FLAKY"),
    SQUARE,  # 6 kept: the second sampled solution passes
    solution("def square(x):\n    return x + x"),
    solution("def square(x):\n    return x * x"),
    proposal(  # 7 a near-duplicate of the task kept just before
        "Write a function to square a number!", "assert square(4) == 16", "assert square(0) == 0"
    ),
]


class FlakySandbox(Sandbox):
    """A real sandbox, except that a program marked FLAKY fails every run after its first."""

    def __init__(self) -> None:
        super().__init__(SandboxLimits(timeout_s=5, test_timeout_s=2))
        self.flaky_runs = 0

    def run_asserts(self, code: str, tests: list[str], setup: str = "") -> ExecResult:
        result = super().run_asserts(code, tests, setup)
        if "FLAKY" in code:
            self.flaky_runs += 1
            if self.flaky_runs > 1:
                return result.model_copy(update={"status": ExecStatus.FAILED})
        return result


def test_parse_proposal() -> None:
    task, why = parse_proposal(SQUARE)
    assert why == "" and task is not None
    assert task.entry_point == "square" and task.tests == [
        "assert square(3) == 9",
        "assert square(-2) == 4",
    ]
    assert task.suite == "selfplay" and task.split == "train" and EvalGuard().reason(task) is None
    assert stub_for(task) == "def square(*args, **kwargs):\n    return None\n"
    assert parse_proposal("Task: x\n")[0] is None
    assert (
        "need 2"
        in parse_proposal(proposal("Write a function to square.", "assert square(1) == 1"))[1]
    )
    mixed = proposal("Write two functions please.", "assert f(1) == 1", "assert g(1) == 1")
    assert "call one function" in parse_proposal(mixed)[1]


def test_selfplay_keeps_only_tasks_that_pass_every_filter(tmp_path: Path) -> None:
    backend = ScriptedBackend(REPLIES)
    config = SelfPlayConfig(proposals=8, solutions=2, examples=2, test_timeout_s=2)
    seen: list[int] = []
    result = selfplay(
        SEEDS,
        backend,
        config,
        eval_sets=EVAL,
        sandbox=FlakySandbox(),
        progress=lambda _s, done, _t: seen.append(done),
    )
    assert [o.verdict for o in result.outcomes] == [
        "unparseable",
        "duplicate",
        "evaluation",
        "trivial",
        "unsolved",
        "slow_or_flaky",
        "kept",
        "duplicate",
    ]
    assert result.counts() == {
        "unparseable": 1,
        "duplicate": 2,
        "evaluation": 1,
        "trivial": 1,
        "unsolved": 1,
        "slow_or_flaky": 1,
        "kept": 1,
    }
    assert "s/2" in result.outcomes[1].detail and "mbpp-validation #0" in result.outcomes[2].detail
    assert "selfplay/" in result.outcomes[7].detail
    assert len(backend.calls) == len(REPLIES) and seen == list(range(1, 9))
    # proposals at T 0.8, each showing two seed tasks
    assert backend.calls[0].params.temperature == 0.8
    assert sum(s.text in backend.calls[0].messages[0].content for s in SEEDS) == 2

    path = tmp_path / "selfplay-test.jsonl"
    report = write_tasks(result, path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["text"] == "Write a function to square a number."
    assert rows[0]["code"] == "def square(x):\n    return x * x\n"
    summary = json.loads(report.read_text())
    assert summary["proposals"] == 8 and summary["kept"] == 1
    assert summary["checked_against"] == {"mbpp-validation": 1}
    # `fixloop data seed --suite FILE` reads it as a train split the data guard accepts
    tasks = load_file(path, split="train")
    assert [t.task_id for t in tasks] == ["selfplay-test/1"] and tasks[0].tests == rows[0][
        "test_list"
    ]
    assert all(EvalGuard().reason(t) is None for t in tasks)


def test_cli_selfplay_from_mbpp_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fixloop.cli import app

    replies = [SQUARE, solution("def square(x):\n    return x ** 2"), "no task"]
    monkeypatch.setattr(agent.backends, "make_backend", lambda _s: ScriptedBackend(replies))
    out = tmp_path / "sp.jsonl"
    result = CliRunner().invoke(app, ["data", "selfplay", "-n", "2", "-k", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "kept 1 of 2 proposed tasks; dropped: unparseable 1" in result.output
    assert "mbpp-validation (90)" in result.output
    assert f"next: fixloop data seed --suite {out}" in result.output
    assert len(out.read_text().splitlines()) == 1
