"""An RLEF run's report.md: what was trained, how the reward moved, what the episodes did,
and the comparison RLEF makes (repair against resampling, before and after).

The run writes it when it ends; `bench/rlef_compare.py --run RUN` evaluates the exported
model, writes its table in RUN/compare/ and rewrites this report with the table in it.
Until then the report gives the commands that produce it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.train import rundir

REPORT = "report.md"
COMPARE_DIR = "compare"  # bench/rlef_compare.py's default --out for a run
ROLLOUTS = "rollouts.jsonl"  # every episode played: task, reward, verdicts, replies


@dataclass(frozen=True)
class EpisodeCounts:
    """What the run's episodes did, from rollouts.jsonl."""

    episodes: int
    passed: int  # reward > 0: the final program passed the tests that decide the reward
    repaired: int  # passed after a failed first attempt (the behaviour RLEF rewards)
    public_not_hidden: int  # passed the public asserts, failed the hidden tests: reward -1
    format_errors: int  # replies with no code
    steps: int
    steps_without_signal: int  # every episode of the step got the same reward: no gradient


def read_rollouts(run_dir: Path) -> list[dict[str, Any]]:
    return rundir.read_jsonl(run_dir / ROLLOUTS)


def episode_counts(rollouts: list[dict[str, Any]]) -> EpisodeCounts:
    by_step: dict[int, set[float]] = {}
    for r in rollouts:
        by_step.setdefault(int(r["step"]), set()).add(float(r["reward"]))
    passed = [r for r in rollouts if float(r["reward"]) > 0]
    return EpisodeCounts(
        episodes=len(rollouts),
        passed=len(passed),
        repaired=sum(1 for r in passed if int(r.get("turns", 1)) > 1),
        public_not_hidden=sum(
            1 for r in rollouts if r.get("passed_public") and r.get("passed_hidden") is False
        ),
        format_errors=sum(int(r.get("format_errors", 0)) for r in rollouts),
        steps=len(by_step),
        steps_without_signal=sum(1 for rewards in by_step.values() if len(rewards) == 1),
    )


def reward_summary(run_dir: Path) -> str:
    """One line: steps, time, and the mean episode reward early against late."""
    history = rundir.read_history(run_dir)
    rewards = [float(h["reward"]) for h in history if "reward" in h]
    if not rewards:
        return "no steps logged yet"
    q = max(1, len(rewards) // 4)
    first, last = sum(rewards[:q]) / q, sum(rewards[-q:]) / q
    seconds = sum(float(h.get("seconds") or 0.0) for h in history)
    return (
        f"{len(rewards)} steps in {seconds / 60:.0f} min ({seconds / len(rewards):.0f} s a "
        f"step); mean episode reward {first:+.2f} over the first {q} steps, {last:+.2f} over "
        f"the last {q}"
    )


def compare_command(run_dir: Path, base: str, turns: int, max_tokens: int) -> str:
    return (
        f"fixloop export {run_dir} --lora-only --name NAME\n"
        f"python bench/rlef_compare.py --run {run_dir} --base {base} --trained NAME "
        f"--turns {turns} --max-tokens {max_tokens} [--limit N]"
    )


def run_report(run_dir: Path) -> str:
    config = rundir.read_json(run_dir / rundir.CONFIG)
    cfg, base = config["config"], config["base"]["name"]
    data = rundir.read_json(run_dir / rundir.DATA) if (run_dir / rundir.DATA).is_file() else {}
    counts = episode_counts(read_rollouts(run_dir))
    lines = [
        f"# RLEF run {run_dir.name}",
        "",
        f"- Base `{base}`, {'LoRA r ' + str(cfg['lora_r']) if cfg['lora'] else 'full'}; "
        f"group {cfg['group']} episodes a step, at most {cfg['turns']} turns, replies capped at "
        f"{cfg['max_new_tokens']} tokens, KL beta {cfg['kl']}, lr {cfg['lr']}.",
        f"- Tasks: {data.get('tasks', '?')} from `{data.get('suite', cfg['suite'])}` "
        f"({data.get('rewarded_on_public_tests', '?')} without hidden tests, rewarded on their "
        f"public tests; {data.get('refused_eval_tasks', '?')} refused as evaluation tasks).",
        f"- Training: {reward_summary(run_dir)}. Curve: reward.png.",
    ]
    if counts.episodes:
        lines.append(
            f"- Episodes: {counts.episodes}; {counts.passed} passed "
            f"({counts.repaired} of them after a failed first attempt); "
            f"{counts.public_not_hidden} passed the public asserts and failed the hidden tests "
            f"(reward -1); {counts.format_errors} replies without code; "
            f"{counts.steps_without_signal} of {counts.steps} steps had no learning signal "
            f"(every episode the same reward)."
        )
    lines += ["", "## Repair against resampling, before and after", ""]
    compared = run_dir / COMPARE_DIR / REPORT
    if compared.is_file():
        table = compared.read_text(encoding="utf-8").split("\n", 1)[1].strip()
        lines += [table, ""]
    else:
        lines += [
            "Not measured yet. Export the run and compare it with its base on MBPP "
            "validation (greedy repair within the turn budget against as many independent "
            "samples):",
            "",
            "```",
            compare_command(run_dir, base, cfg["turns"], cfg["max_new_tokens"]),
            "```",
            "",
        ]
    return "\n".join(lines)


def write_run_report(run_dir: Path) -> Path:
    path = run_dir / REPORT
    path.write_text(run_report(run_dir), encoding="utf-8")
    return path
