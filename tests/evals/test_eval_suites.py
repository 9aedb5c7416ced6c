"""Suites load with the right ids, splits and tests; the held-out rule is fixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from agent.environment import FunctionEnv, Proposal
from agent.events import Task
from agent.session import AgentSession
from evals.suites import (
    MBPP_TEST_IDS,
    SuiteError,
    doctest_asserts,
    eval_test_ids,
    is_heldout,
    load_file,
    load_humaneval,
    load_mbpp,
    load_sessions,
    load_suite,
    mbpp_number,
    parse_ids,
    text_is_heldout,
)


def test_mbpp_validation_loads_with_its_original_ids() -> None:
    tasks = load_mbpp("validation")
    assert len(tasks) == 90
    assert [t.task_id for t in tasks[:2]] == ["mbpp/511", "mbpp/512"]
    first = tasks[0]
    assert first.suite == "mbpp" and first.split == "validation"
    assert first.tests == [
        "assert find_Min_Sum(12) == 7",
        "assert find_Min_Sum(105) == 15",
        "assert find_Min_Sum(2) == 2",
    ]
    assert first.text.startswith("Write a python function to find minimum sum of factors")
    assert not first.hidden_tests


def test_mbpp_selection_by_ids_and_limit() -> None:
    tasks = load_suite("mbpp", split="train", ids="601-610,700", limit=5)
    assert [t.task_id for t in tasks] == [f"mbpp/{i}" for i in range(601, 606)]
    assert all(t.split == "train" for t in tasks)
    assert [t.task_id for t in load_suite("mbpp", split="train", ids="700")] == ["mbpp/700"]
    with pytest.raises(SuiteError, match="selected no task"):
        load_suite("mbpp", split="train", ids="1-5")


def test_mbpp_test_split_absent_is_a_clear_error() -> None:
    with pytest.raises(SuiteError, match=r"split 'test' is not in .*validation"):
        load_mbpp("test")
    with pytest.raises(SuiteError, match="no split 'dev'"):
        load_mbpp("dev")


def test_parse_ids() -> None:
    assert parse_ids("3,7,10-12") == {3, 7, 10, 11, 12}
    with pytest.raises(SuiteError, match="not N or A-B"):
        parse_ids("a-b")
    with pytest.raises(SuiteError, match="is empty"):
        parse_ids("20-10")


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROW = {
    "text": "Write a function to add.",
    "code": "def add(a, b): return a + b",
    "task_id": 42,
    "test_setup_code": "import math",
    "test_list": ["assert add(1, 2) == 3"],
    "challenge_test_list": [],
}


def test_a_file_in_mbpp_format_is_held_out_unless_told_otherwise(tmp_path: Path) -> None:
    path = _write(tmp_path / "mine.jsonl", [ROW])
    (task,) = load_file(path)
    assert (task.task_id, task.split, task.suite) == ("mine/42", "test", str(path))
    assert task.test_setup == "import math"
    assert is_heldout(task)
    (task,) = load_suite(str(path), split="train")
    assert task.split == "train" and not is_heldout(task)


def test_a_full_mbpp_file_keeps_the_original_splits(tmp_path: Path) -> None:
    rows = [{**ROW, "task_id": 11}, {**ROW, "task_id": 700}]
    tasks = load_file(_write(tmp_path / "mbpp.jsonl", rows))
    assert [(t.task_id, t.split) for t in tasks] == [("mbpp/11", "test"), ("mbpp/700", "train")]
    assert [is_heldout(t) for t in tasks] == [True, False]


def test_bad_files_name_the_line_and_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROW) + "\n{not json\n")
    with pytest.raises(SuiteError, match=r"bad.jsonl:2: not valid JSON"):
        load_file(bad)
    odd = _write(tmp_path / "odd.jsonl", [{"question": "x"}])
    with pytest.raises(SuiteError, match=r"odd.jsonl:1: unknown format.*'test_list'"):
        load_file(odd)
    with pytest.raises(SuiteError, match="unknown suite 'nope'"):
        load_suite("nope")


def test_humaneval_loads_prompt_docstring_tests_and_hidden_check() -> None:
    tasks = load_humaneval()
    assert len(tasks) == 164
    first = tasks[0]
    assert first.task_id == "HumanEval/0" and first.entry_point == "has_close_elements"
    assert "def has_close_elements(numbers: List[float], threshold: float) -> bool:" in first.text
    assert first.tests == [
        "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False",
        "assert has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3) == True",
    ]
    assert first.hidden_tests == ["check(has_close_elements)"]
    assert "def check(candidate):" in first.test_setup
    assert all(is_heldout(t) for t in tasks)


def test_doctest_examples_drop_comments_and_known_wrong_ones() -> None:
    prompt = '    """\n    >>> f(1) # one\n    2\n    >>> print("x")\n    x\n    """\n'
    assert doctest_asserts(prompt, "f") == ["assert f(1) == 2"]
    median = "    >>> median([-10, 4, 6, 1000, 10, 20])\n    15.0\n"
    assert doctest_asserts(median, "median") == []


@pytest.mark.parametrize("index", [0, 32])  # 32 (find_zero) needs the prompt's helper `poly`
def test_humaneval_canonical_solution_passes_in_the_sandbox(index: int) -> None:
    import gzip

    from evals.suites import humaneval_path

    with gzip.open(humaneval_path(), "rt") as fh:
        row = [json.loads(line) for line in fh][index]
    task = load_humaneval()[index]
    env = FunctionEnv(timeout_s=10)
    good = row["prompt"] + row["canonical_solution"]
    assert env.execute(Proposal(code=good), task).passed
    hidden = env.run_hidden(good, task)
    assert hidden is not None and hidden.passed
    wrong = row["prompt"] + "    return None\n"
    hidden = env.run_hidden(wrong, task)
    assert hidden is not None and not hidden.passed


@pytest.mark.parametrize(
    ("task_id", "suite", "number"),
    [("mbpp/11", None, 11), ("MBPP/11", None, 11), (" mbpp_42 ", None, 42), ("mbpp-7", "x", 7),
     ("mbpp:600", None, 600), ("11", "mbpp", 11), ("11", "MBPP", 11), ("11", None, None),
     ("11", "custom", None), ("mbpp/\u00b2", "mbpp", None), ("\u00b2", "mbpp", None),
     ("mbpp/11/x", None, None), ("custom/11", "mbpp", None), (None, "mbpp", None)],
)  # fmt: skip
def test_mbpp_number_is_the_one_id_parser(
    task_id: str | None, suite: str | None, number: int | None
) -> None:
    assert mbpp_number(task_id, suite) == number


@pytest.mark.parametrize(
    ("task_id", "suite"), [("MBPP/11", None), ("mbpp_300", None), ("11", "mbpp"), ("510", "mbpp")]
)
def test_every_spelling_of_a_test_id_is_held_out_by_both_rules(
    task_id: str, suite: str | None
) -> None:
    """The eval harness read only `mbpp/N`; the trainer's guard read these too. Both agree now."""
    from trainer.data.hygiene import EvalGuard

    task = Task(text="x", task_id=task_id, suite=suite)
    assert is_heldout(task)
    reason = EvalGuard(extra=None).reason(task)
    assert reason is not None and "MBPP's test split" in reason


def test_heldout_rule() -> None:
    assert is_heldout(Task(text="x", task_id="mbpp/11", suite="mbpp", split="test"))
    assert is_heldout(Task(text="x", task_id="mbpp/510", suite="mbpp"))
    assert not is_heldout(Task(text="x", task_id="mbpp/511", suite="mbpp", split="validation"))
    assert not is_heldout(Task(text="x", task_id="mbpp/601", suite="mbpp", split="train"))
    assert is_heldout(Task(text="x", task_id="HumanEval/3"))
    ids = eval_test_ids()
    assert len(ids) == 500 == len(MBPP_TEST_IDS) and ids[0] == "mbpp/11" and ids[-1] == "mbpp/510"
    texts = [f"Write a function number {i}." for i in range(200)]
    held = [t for t in texts if text_is_heldout(t)]
    assert 20 <= len(held) <= 60  # one in five, give or take
    # fixed: the same text is always judged the same, whatever its spacing or case
    for text in texts[:20]:
        own = Task(text=text)
        assert is_heldout(own) == text_is_heldout(text) == is_heldout(Task(text=text.upper()))
    assert text_is_heldout("Write a function number 0.") == text_is_heldout(
        "  write  a function NUMBER 0. "
    )


def _session(settings: Settings, task: Task, purpose: str, accept: bool) -> None:
    reply = "```python\ndef f():\n    return 1\n```"
    session = AgentSession(task, ScriptedBackend([reply]), settings, purpose=purpose)  # type: ignore[arg-type]
    with session:
        list(session.start())
        if accept:
            list(session.accept())


def test_sessions_suite_keeps_accepted_tested_heldout_tasks(tmp_path: Path) -> None:
    settings = Settings(sessions_dir=tmp_path / "s", data_dir=tmp_path / "d", exec_timeout=5.0)
    texts = [f"Write f, variant {i}." for i in range(60)]
    held = [t for t in texts if text_is_heldout(t)][:2]
    kept = [t for t in texts if not text_is_heldout(t)][:1]
    tests = ["assert f() == 1"]
    _session(settings, Task(text=held[0], tests=tests), "chat", accept=True)  # in
    _session(settings, Task(text=held[0], tests=tests), "solve", accept=True)  # same task
    _session(settings, Task(text=held[1], tests=tests), "chat", accept=False)  # not accepted
    _session(settings, Task(text=held[1] + " again", tests=[]), "chat", accept=True)  # no tests
    _session(settings, Task(text=kept[0], tests=tests), "chat", accept=True)  # trainable
    _session(settings, Task(text=held[1], tests=tests), "eval", accept=True)  # an eval
    tasks = load_sessions(settings.sessions_dir)
    assert [t.text for t in tasks] == [held[0]]
    (task,) = tasks
    assert task.suite == "sessions" and task.split == "test" and is_heldout(task)
    assert task.task_id is not None and task.task_id.startswith("sessions/")
    assert load_suite("sessions", sessions_dir=settings.sessions_dir) == tasks
    with pytest.raises(SuiteError, match="no held-out accepted sessions"):
        load_suite("sessions", sessions_dir=tmp_path / "empty")
