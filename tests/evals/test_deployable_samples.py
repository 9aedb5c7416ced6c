"""bench/deployable_samples.py: samples stopped at the first public pass, against the oracle."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from evals.results import EpisodeRecord


def load() -> ModuleType:
    path = Path(__file__).parents[2] / "bench" / "deployable_samples.py"
    spec = importlib.util.spec_from_file_location("deployable_samples", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(task: str, sample: int, public: bool, hidden: bool) -> EpisodeRecord:
    return EpisodeRecord(
        task_id=task,
        sample=sample,
        model="m",
        model_key="m",
        outcome="passed" if hidden else "failed",
        passed=hidden,
        turn_passed=[public],
        completion_tokens=10,
        wall_s=1.0,
    )


def test_a_public_pass_that_fails_the_hidden_tests_stops_the_deployed_loop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [
        # t1: the first sample passes the examples but not the hidden tests, the second
        # passes both: the oracle counts it at 2, a deployed loop stopped at 1 and failed
        record("t1", 0, True, False),
        record("t1", 1, True, True),
        # t2: passes everything at the third sample
        record("t2", 0, False, False),
        record("t2", 1, False, False),
        record("t2", 2, True, True),
        # t3: never passes
        *[record("t3", s, False, False) for s in range(3)],
    ]
    bench = load()
    by_task: dict[str, list[EpisodeRecord]] = {}
    for r in records:
        by_task.setdefault(r.task_id, []).append(r)
    deployed = bench.figures(by_task, 3, public=True)
    oracle = bench.figures(by_task, 3, public=False)
    assert deployed["within"] == [0, 0, 1] and deployed["episodes"] == 1 + 3 + 3
    assert oracle["within"] == [0, 1, 2] and oracle["episodes"] == 2 + 3 + 3
    out = tmp_path / "samples-k4"
    out.mkdir()
    (out / "episodes-m.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in records))
    assert bench.main([str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| stop at a public pass (deployable) | 0/3 0.0%" in printed
    assert "| oracle pass@k | 0/3 0.0% [0.0-56.1] | 1/3 33.3% [6.1-79.2] | 2/3 66.7%" in printed
    # a task that failed without its samples all drawn cannot be scored
    by_task["t3"] = by_task["t3"][:2]
    with pytest.raises(SystemExit, match="t3: 2 of 3 samples drawn"):
        bench.figures(by_task, 3, public=True)
