"""Hygiene: damaged logs reported and skipped, eval tasks refused, duplicates and long rows cut."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.events import Task
from tests.trainer.data_support import SESSIONS, golden, read_jsonl, session_file
from trainer.data.build import BuildOptions, build
from trainer.data.episodes import read_log
from trainer.data.hygiene import (
    EvalGuard,
    HeldOutTaskError,
    HFTokenCounter,
    ProxyTokenCounter,
    apply_budget,
    deduplicate,
)


@pytest.fixture
def sessions_copy(tmp_path: Path) -> Path:
    target = tmp_path / "sessions"
    shutil.copytree(SESSIONS, target)
    return target


def _cut_last_line(path: Path) -> int:
    """Tear the last line in half (a crash mid-write); returns its line number."""
    lines = path.read_bytes().split(b"\n")[:-1]
    torn = lines[-1][: len(lines[-1]) // 2]
    path.write_bytes(b"\n".join([*lines[:-1], torn]))
    return len(lines)


def test_torn_last_line_is_reported_and_the_rest_of_the_session_used(
    sessions_copy: Path, tmp_path: Path
) -> None:
    log = session_file("s04-user-edit-accept", sessions_copy)  # last event: user_accepted
    line = _cut_last_line(log)
    result = build(BuildOptions(sessions=[sessions_copy], out=tmp_path / "out"))
    assert [(p.path, p.line) for p in result.problems] == [(log, line)]
    assert "truncated last line" in str(result.problems[0])
    assert str(result.problems[0]).startswith(f"{log}:{line}: ")
    # Without the accept, the user's passing edit is still the session's good solution.
    sft = {r["session_id"]: r for r in read_jsonl(result.files["sft"])}
    assert sft["s04-user-edit-accept"]["why"] == "edited"
    assert result.rows == golden()["rows"]
    manifest_problems = result.manifest["problems"]
    assert manifest_problems == [str(result.problems[0])]


def test_corrupt_line_skips_that_session_with_file_and_line_the_rest_builds(
    sessions_copy: Path, tmp_path: Path
) -> None:
    log = session_file("s02-exec-repair", sessions_copy)
    lines = log.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4][:40] + "#garbage#" + lines[4][40:]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    not_a_log = sessions_copy / "2026-01-01" / "notes.jsonl"
    not_a_log.write_text('{"hello": "world"}\n', encoding="utf-8")

    result = build(BuildOptions(sessions=[sessions_copy], out=tmp_path / "out"))

    where = sorted((p.path.name, p.line) for p in result.problems)
    assert where == [("notes.jsonl", 1), ("s02-exec-repair.jsonl", 5)]
    assert all("session skipped" in str(p) for p in result.problems)
    assert result.sessions == golden()["sessions_used"] - 1
    # s09 repeats s02, so s02's rows are still there (from s09): the counts hold.
    assert result.rows == golden()["rows"]
    used = {s["session_id"] for s in result.manifest["sessions"]}
    assert "s02-exec-repair" not in used and "s09-repeat-of-s02" in used


def test_read_log_reports_an_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    log, problems = read_log(empty)
    assert log is None
    assert problems[0].path == empty and "empty" in problems[0].message


def test_missing_sessions_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--sessions DIR"):
        build(BuildOptions(sessions=[tmp_path / "nope"], out=tmp_path / "out"))


@pytest.mark.parametrize(
    ("task", "words"),
    [
        (Task(text="x", task_id="mbpp/11", suite="mbpp", split="test"), "MBPP's test split"),
        (Task(text="x", task_id="mbpp/510"), "MBPP's test split"),
        (Task(text="x", task_id="HumanEval/0", suite="humaneval"), "HumanEval"),
        (Task(text="x", task_id="custom/3", suite="custom", split="test"), "test split"),
        (Task(text="x", task_id="mbpp/511", suite="mbpp", split="validation"), "gate"),
        (Task(text="x", task_id="mbpp/600"), "MBPP's validation split"),
        (Task(text="x", task_id="own/1", suite="own", split="validation"), "validation split"),
    ],
)
def test_guard_refuses_evaluation_tasks(task: Task, words: str) -> None:
    guard = EvalGuard()
    reason = guard.reason(task)
    assert reason is not None and words in reason
    with pytest.raises(HeldOutTaskError, match="refusing to train on it"):
        guard.check(task)


@pytest.mark.parametrize(
    "task",
    [
        Task(text="x", task_id="mbpp/601", suite="mbpp", split="train"),
        Task(text="x", task_id="mbpp/974", suite="mbpp", split="train"),
        Task(text="x", task_id="mbpp/10", suite="mbpp", split="prompt"),
    ],
)
def test_guard_allows_train_tasks(task: Task) -> None:
    assert EvalGuard().reason(task) is None
    EvalGuard().check(task)


def test_guard_uses_the_eval_harness_rule() -> None:
    from evals.suites import text_is_heldout

    text = "Write a function first_odd(nums) that returns the first odd number in a list, or -1."
    assert text_is_heldout(text)
    assert "eval harness" in (EvalGuard().reason(Task(text=text)) or "")
    assert EvalGuard(extra=None).reason(Task(text=text)) is None


def _leti(program: str, reward: str = "bad", task_key: str = "t1") -> dict:
    return {
        "text": f"<|{reward}|>task\n{program}",
        "reward": reward,
        "feedback": "",
        "program": program,
        "task_key": task_key,
        "session_id": program,
    }


def test_near_duplicates_are_removed_within_task_and_label_only() -> None:
    base = (
        "def running_total(values):\n    total = 0\n    for value in values:\n"
        "        if value is None:\n            continue\n        total += value\n"
        "    return total\n"
    )
    rows = [
        _leti(base),
        _leti(base.replace("    ", "  ")),  # whitespace only: exact after normalization
        _leti(base.replace("return total", "return total  # done")),  # a comment: near
        _leti(base, reward="good"),  # same program, other label: kept
        _leti(base, task_key="t2"),  # same program, other task: kept
        _leti("def f(xs):\n    return sum(xs)\n"),  # different program: kept
    ]
    kept, stats = deduplicate("leti", rows, threshold=0.95)
    assert (stats.exact, stats.near) == (1, 1)
    assert [r["reward"] + r["task_key"] for r in kept] == ["badt1", "goodt1", "badt2", "badt1"]
    kept_off, stats_off = deduplicate("leti", rows, threshold=1.0)
    assert (stats_off.exact, stats_off.near) == (1, 0) and len(kept_off) == 5


def test_token_budget_drops_and_counts(tmp_path: Path) -> None:
    counter = ProxyTokenCounter()
    assert counter.count("def add(a, b):\n    return a + b") == 14
    assert counter.count("abcdefghij") == 3
    rows = [_leti("x = 1"), _leti("y = 2\n" * 200)]
    kept, dropped = apply_budget("leti", rows, counter, max_tokens=50)
    assert (len(kept), dropped) == (1, 1)

    result = build(BuildOptions(sessions=[SESSIONS], out=tmp_path, max_tokens=230))
    over = {f: i["over_token_budget"] for f, i in result.manifest["formats"].items()}
    assert over["episodes"] > 0 and over["leti"] == 0
    assert result.manifest["hygiene"]["token_counter"] == "proxy"
    for fmt, info in result.manifest["formats"].items():
        removed = info["dedup"]["exact"] + info["dedup"]["near"] + info["over_token_budget"]
        assert info["rows"] == info["rows_before_hygiene"] - removed, fmt


@pytest.mark.slow
def test_budget_counts_with_the_models_own_tokenizer(smollm_path: Path, tmp_path: Path) -> None:
    counter = HFTokenCounter(smollm_path)
    text = "def add(a, b):\n    return a + b\n"
    assert counter.count(text) == len(counter._tokenizer.encode(text, add_special_tokens=False))
    assert 8 <= counter.count(text) <= 20
    result = build(
        BuildOptions(sessions=[SESSIONS], out=tmp_path, tokenizer=str(smollm_path), max_tokens=200)
    )
    assert result.manifest["hygiene"]["token_counter"] == str(smollm_path)
    assert result.manifest["formats"]["episodes"]["over_token_budget"] > 0
    with pytest.raises(ValueError, match="not a tokenizer directory"):
        HFTokenCounter("no-such-model")
