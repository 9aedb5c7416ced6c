"""bench/rlef_compare.py on results files the eval harness writes: repair within k against
pass@k of samples, for a base and a trained model, and the trained model's flips."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import ModuleType

from evals import report
from evals.results import EpisodeRecord, summarize
from tests.bench_scripts import load_bench_script

ROOT = Path(__file__).resolve().parents[2]
TASKS = ["mbpp/1", "mbpp/2", "mbpp/3"]


def load_bench() -> ModuleType:
    return load_bench_script("rlef_compare")


def record(model: str, task: str, pass_turn: int | None, sample: int = 0) -> EpisodeRecord:
    within = [pass_turn is not None and pass_turn <= t for t in (1, 2, 3)]
    return EpisodeRecord(
        task_id=task, sample=sample, model=model, model_key=model, outcome="done",
        passed=within[-1], pass_turn=pass_turn, within=within, turns=pass_turn or 3,
        completion_tokens=10, wall_s=1.0,
    )  # fmt: skip


def write(out: Path, runs: dict[str, dict[str, list[int | None]]], samples: int) -> None:
    """runs: model -> task -> the pass turn of each sample."""
    results = []
    for model, by_task in runs.items():
        recs = [record(model, t, p, s) for t in TASKS for s, p in enumerate(by_task[t])]
        turns = 3 if samples == 1 else 1
        results.append(
            summarize(recs, TASKS, model=model, suite="mbpp/validation", samples=samples,
                      max_turns=turns, temperature=0.8 if samples > 1 else 0.0, seed=0)
        )  # fmt: skip
    report.write_json(results, out / "results.json")


def test_the_table_and_flips_come_from_the_eval_results(tmp_path: Path) -> None:
    bench = load_bench()
    repair = {  # base: task 1 at turn 1, task 2 at turn 3; trained: 1 at 1, 3 at 2
        "base": {"mbpp/1": [1], "mbpp/2": [3], "mbpp/3": [None]},
        "rlef": {"mbpp/1": [1], "mbpp/2": [None], "mbpp/3": [2]},
    }
    samples = {  # one-turn samples: pass turn 1 or None
        "base": {"mbpp/1": [1, 1, None], "mbpp/2": [None] * 3, "mbpp/3": [None] * 3},
        "rlef": {"mbpp/1": [1, 1, 1], "mbpp/2": [1, None, None], "mbpp/3": [None] * 3},
    }
    write(tmp_path / "repair", repair, 1)
    write(tmp_path / "samples", samples, 3)
    args = argparse.Namespace(
        run=None, base="base", trained="rlef", turns=3, temperature=0.8, limit=None,
        workers=2, out=tmp_path, max_tokens=256,
    )  # fmt: skip
    text = bench.report(args)
    assert "| base | 3 | 2/3 66.7%" in text and "| rlef | 2 | 2/3 66.7%" in text
    assert "| base | 1 | 1/3 33.3%" in text
    # pass@k of samples, unbiased: base task 1 has 2 of 3 passing -> pass@1 2/3, pass@2 1
    assert "| base | 1 | 1/3 33.3% [6.1-79.2] | 0.7/3" in text
    assert "| rlef | 3 | 2/3 66.7% [20.8-93.9] | 2/3 66.7%" in text
    assert "repair within 3: +1 / -1" in text and "gained mbpp/3; lost mbpp/2" in text
    assert "any of 3 samples: +1 / -0" in text
    assert "`FIXLOOP_MAX_TOKENS=256 fixloop eval --suite mbpp" in text
    assert (tmp_path / "budget.png").read_bytes()[:4] == b"\x89PNG"


def test_with_a_run_the_table_lands_in_the_runs_own_report(tmp_path: Path, monkeypatch) -> None:
    from tests.trainer.test_rlef_report import make_run

    bench = load_bench()
    run = make_run(tmp_path)
    assert "Not measured yet" in (bench.write_run_report(run).read_text())
    one = {"mbpp/1": [1], "mbpp/2": [None], "mbpp/3": [None]}
    write(run / "compare" / "repair", {"base": one, "rlef": one}, 1)
    three = {t: p * 3 for t, p in one.items()}
    write(run / "compare" / "samples", {"base": three, "rlef": three}, 3)
    argv = ["rlef_compare.py", "--run", str(run), "--base", "base", "--trained", "rlef",
            "--report-only"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    text = (run / "report.md").read_text()
    assert "Not measured yet" not in text
    assert "| rlef | 3 | 1/3 33.3%" in text and "repair within 3: +0 / -0" in text
    assert (run / "compare" / "budget.png").is_file()
