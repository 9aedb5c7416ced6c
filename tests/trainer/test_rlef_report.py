"""An RLEF run's report.md: counts from the episodes it played, the reward early and late,
and the before/after comparison once bench/rlef_compare.py has written it."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.rlef.report import COMPARE_DIR, episode_counts, read_rollouts, write_run_report


def episode(step: int, reward: float, turns: int = 1, **kw: object) -> dict[str, object]:
    return {"step": step, "task": f"mbpp/{step}", "reward": reward, "turns": turns,
            "format_errors": 0, "passed_public": reward > 0, "passed_hidden": reward > 0,
            **kw}  # fmt: skip


def make_run(tmp_path: Path) -> Path:
    run = tmp_path / "20261201-000000-rlef"
    run.mkdir()
    cfg = {"lora": True, "lora_r": 16, "group": 2, "turns": 3, "max_new_tokens": 256,
           "kl": 0.04, "lr": 5e-5, "suite": "mbpp"}  # fmt: skip
    (run / "config.json").write_text(json.dumps({"config": cfg, "base": {"name": "tiny"}}))
    data = {"suite": "mbpp", "tasks": 4, "rewarded_on_public_tests": 1, "refused_eval_tasks": 0}
    (run / "data.json").write_text(json.dumps(data))
    history = [{"step": s, "reward": r, "seconds": 60.0} for s, r in enumerate([-1, -1, 0, 1], 1)]
    (run / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    rollouts = [
        episode(1, -1.0),
        episode(1, -1.0, format_errors=1),  # no signal
        episode(2, -1.0, passed_public=True, passed_hidden=False),
        episode(2, -1.0),  # none
        episode(3, 1.0, turns=2),
        episode(3, -1.0, turns=3),
        episode(4, 1.0),
        episode(4, 1.0, turns=3),  # no signal
    ]
    (run / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rollouts))
    return run


def test_episode_counts_come_from_the_rollouts(tmp_path: Path) -> None:
    counts = episode_counts(read_rollouts(make_run(tmp_path)))
    assert (counts.episodes, counts.passed, counts.repaired) == (8, 3, 2)
    assert counts.public_not_hidden == 1 and counts.format_errors == 1
    assert (counts.steps, counts.steps_without_signal) == (4, 3)


def test_the_report_says_how_to_compare_until_the_comparison_exists(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    text = write_run_report(run).read_text()
    assert "4 steps in 4 min (60 s a step)" in text
    assert "mean episode reward -1.00 over the first 1 steps, +1.00 over the last 1" in text
    assert "3 passed (2 of them after a failed first attempt)" in text
    assert "3 of 4 steps had no learning signal" in text
    assert "Not measured yet" in text and f"bench/rlef_compare.py --run {run}" in text
    (run / COMPARE_DIR).mkdir()
    (run / COMPARE_DIR / "report.md").write_text("# title\n\n| model | attempts |\n")
    text = write_run_report(run).read_text()
    assert "Not measured yet" not in text and "| model | attempts |" in text
    assert "# title" not in text
