"""RLEF's hidden tests for MBPP: derived from the reference solution, deciding the reward."""

from __future__ import annotations

import random
from pathlib import Path

from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from agent.events import EpisodeFinished
from agent.session import AgentSession
from evals.hidden_tests import derive, derive_split, load_hidden, parse_call, variants
from evals.suites import load_mbpp

REFERENCE = "def total(xs, n):\n    return sum(xs[:n])\n"
PUBLIC = ["assert total([1, 2, 3], 3) == 6", "assert total([5, 5], 2) == 10"]


def test_parse_and_vary_keep_a_sequence_and_its_length_together() -> None:
    call = parse_call("assert total([1, 2, 3], 3) == 6")
    assert call is not None and call.name == "total" and call.args == ([1, 2, 3], 3)
    for args in variants(call, random.Random(0)):
        assert args[1] == len(args[0])  # n follows the list it counts
    assert parse_call("assert total(x, 3) == 6") is None  # not a literal: not varied
    assert parse_call("assert abs(total([1], 1) - 1) < 1e-9") is None


def test_derived_tests_pass_the_reference_and_are_reproducible() -> None:
    first = derive("t1", REFERENCE, PUBLIC)
    assert 2 <= len(first) <= 5 and all(t.startswith("assert total(") for t in first)
    assert not set(first) & set(PUBLIC)
    assert derive("t1", REFERENCE, PUBLIC) == first  # the same task id, the same tests


def test_floats_objects_and_crashes_are_not_kept() -> None:
    assert derive("f", "def half(x):\n    return x / 2\n", ["assert half(4) == 2.0"]) == []
    code = "def bad(x):\n    raise ValueError(x)\n"
    assert derive("b", code, ["assert bad(1) == 1"]) == []


def test_split_file_is_resumable(tmp_path: Path) -> None:
    rows = [
        {"task_id": 1, "code": REFERENCE, "test_list": PUBLIC},
        {
            "task_id": 2,
            "code": "def f(x):\n    return x / 2\n",
            "test_list": ["assert f(2) == 1.0"],
        },
    ]
    out = tmp_path / "train_hidden.jsonl"
    assert derive_split(rows, out, progress=False) == (1, 2)
    assert derive_split(rows, out, progress=False) == (1, 2)  # nothing left to do
    assert load_hidden(tmp_path / "train.jsonl")[1]


def test_mbpp_train_tasks_carry_their_hidden_tests() -> None:
    tasks = load_mbpp("train")
    with_hidden = [t for t in tasks if t.hidden_tests]
    assert len(with_hidden) >= 300  # 340 of 374 when derived
    assert not any(t.hidden_tests for t in load_mbpp("validation"))


def test_passing_public_but_failing_hidden_is_rewarded_minus_one(tmp_path: Path) -> None:
    """A program that hard-codes the public answers passes them and loses the reward."""
    hidden = derive("t1", REFERENCE, PUBLIC)
    cheat = "def total(xs, n):\n    return {3: 6, 2: 10}[n]\n"
    from agent.events import Task

    task = Task(text="Sum the first n items.", tests=PUBLIC, hidden_tests=hidden)
    settings = Settings(sessions_dir=tmp_path / "s", max_turns=1)
    reply = f"```python\n{cheat}```"
    session = AgentSession(task, ScriptedBackend([reply]), settings, purpose="seed")
    events = list(session.start())
    session.close()
    end = events[-1]
    assert isinstance(end, EpisodeFinished)
    assert end.outcome == "passed" and end.hidden_passed is False and end.reward == -1.0
    honest = AgentSession(
        task, ScriptedBackend([f"```python\n{REFERENCE}```"]), settings, purpose="seed"
    )
    end = list(honest.start())[-1]
    honest.close()
    assert isinstance(end, EpisodeFinished) and end.reward == 1.0
    shown = "\n".join(m.content for m in session.messages)
    assert not any(test in shown for test in hidden)  # never shown to the model
