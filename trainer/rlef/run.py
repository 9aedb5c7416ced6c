"""`fixloop train --method rlef`: one RLEF run in fixloop's run directory.

The base loads as for every method (registry name, GGUF dequantized, or HF directory); the
tasks come from `--suite` (MBPP train by default, with the hidden tests `fixloop data
hidden-tests` derived; a task without them is rewarded on its public tests and the run
counts those); episodes are played in the same FunctionEnv and sandbox as `fixloop solve`.
The run directory holds config.json, data.json (the suite and its tasks' hash),
history.jsonl (loss, reward, KL per step), rollouts.jsonl (every episode: task, reward,
verdicts, the model's replies), the adapter, the tokenizer, metrics.json, reward.png
(the mean episode reward per step: the run's learning curve) and report.md
(trainer/rlef/report.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from agent.events import Task
from trainer.rlef.report import ROLLOUTS, write_run_report
from trainer.train import rundir
from trainer.train.config import TrainConfig


def load_tasks(cfg: TrainConfig) -> tuple[list[Task], int]:
    """The training tasks, and how many the data guard refused (evaluation tasks, and the
    user's tasks the eval harness holds out): RLEF never trains on what fixloop evaluates."""
    from evals.suites import load_suite
    from trainer.data.hygiene import EvalGuard, HeldOutTaskError

    tasks = load_suite(cfg.suite, split="train", limit=cfg.limit)
    guard = EvalGuard()
    kept = [t for t in tasks if guard.reason(t) is None]
    if not kept:
        raise HeldOutTaskError(
            f"every task of {cfg.suite} is an evaluation task or held out for evaluation; "
            "train RLEF on MBPP's train split (--suite mbpp) or tasks of your own"
        )
    return kept, len(tasks) - len(kept)


def tasks_sha256(tasks: list[Task]) -> str:
    data = json.dumps([t.model_dump(mode="json") for t in tasks], sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()


def run_rlef(
    cfg: TrainConfig,
    *,
    cache_dir: Path,
    registry_dir: Path,
    resume: Path | None = None,
    progress: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """Train with RLEF; the run directory and its metrics."""
    import torch

    from agent.environment import FunctionEnv
    from trainer.rlef.grpo import RewardLog, RlefSettings, grpo_trainer, trl_quirks
    from trainer.train.modeling import (
        BaseSource,
        base_config,
        load_model,
        load_tokenizer,
        lora_config,
        resolve_base,
    )
    from trainer.train.trainers import RunDirCallback

    tasks, refused = load_tasks(cfg)
    if resume is not None:
        run_dir = resume
        base = BaseSource.from_dict(rundir.read_json(resume / rundir.CONFIG)["base"])
        checkpoint = rundir.latest_checkpoint(resume)
        rundir.keep_steps_until(resume / ROLLOUTS, rundir.checkpoint_step(checkpoint))
    else:
        base = resolve_base(cfg.base, cache_dir=cache_dir, data_dir=registry_dir)
        run_dir = rundir.new_run_dir(cfg.out_dir, cfg.method)
        checkpoint = None
    public_only = sum(not t.hidden_tests for t in tasks)
    max_steps = cfg.max_steps or max(1, int(cfg.epochs * len(tasks)))
    if checkpoint is not None and rundir.checkpoint_step(checkpoint) >= max_steps:
        # the run ends at its checkpoint: its weights are the checkpoint's (the Trainer,
        # resumed in the middle of an epoch, would train one more step before it stopped)
        _weights_from_checkpoint(
            checkpoint, run_dir / (rundir.ADAPTER if cfg.lora else rundir.FULL_MODEL)
        )
        load_tokenizer(base).save_pretrained(run_dir / rundir.TOKENIZER)
        rundir.keep_steps_until(run_dir / rundir.HISTORY, rundir.checkpoint_step(checkpoint))
        return run_dir, _finish(run_dir, base.name, len(tasks), public_only)
    tokenizer = load_tokenizer(base)
    model = load_model(base, torch.float32)
    if checkpoint is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_json(
            run_dir / rundir.CONFIG,
            {"config": cfg.model_dump(mode="json"), "base": base.as_dict(), "leti_token_ids": []},
        )
        rundir.write_json(
            run_dir / rundir.DATA,
            {"suite": cfg.suite, "tasks": len(tasks), "tasks_sha256": tasks_sha256(tasks),
             "refused_eval_tasks": refused, "rewarded_on_public_tests": public_only},
        )  # fmt: skip
        base_config(model).save_pretrained(run_dir / rundir.BASE_CONFIG)
    settings = RlefSettings(
        num_generations=cfg.group,
        max_turns=cfg.turns,
        max_new_tokens=cfg.max_new_tokens,
        beta=cfg.kl,
        learning_rate=cfg.lr,
        max_steps=max_steps,
        seed=cfg.seed,
    )
    log = RewardLog(path=run_dir / ROLLOUTS)
    env = FunctionEnv()
    trainer = grpo_trainer(
        model,
        tokenizer,
        env,
        tasks,
        str(run_dir / rundir.CHECKPOINTS),
        settings,
        peft_config=lora_config(cfg, []) if cfg.lora else None,
        log=log,
        callbacks=[RunDirCallback(run_dir, "rlef", progress=progress)],
    )
    trainer.args.save_strategy = "steps"
    trainer.args.save_steps = cfg.save_every
    trainer.args.save_total_limit = cfg.keep_checkpoints
    with trl_quirks():
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    trainer.model.save_pretrained(run_dir / (rundir.ADAPTER if cfg.lora else rundir.FULL_MODEL))
    tokenizer.save_pretrained(run_dir / rundir.TOKENIZER)
    return run_dir, _finish(run_dir, base.name, len(tasks), public_only)


def _finish(run_dir: Path, base_name: str, tasks: int, public_only: int) -> dict[str, Any]:
    """metrics.json, reward.png and report.md, from history.jsonl and rollouts.jsonl (a
    resumed run's parts counted)."""
    history = rundir.read_history(run_dir)
    rewards = [h["reward"] for h in history if "reward" in h]
    metrics: dict[str, Any] = {
        "method": "rlef",
        "steps": len(history),
        "tasks": tasks,
        "rewarded_on_public_tests": public_only,
        "first_reward": rewards[0] if rewards else None,
        "final_reward": sum(rewards[-5:]) / len(rewards[-5:]) if rewards else None,
        "train_seconds": round(sum(float(h.get("seconds") or 0.0) for h in history), 3),
    }
    rundir.write_json(run_dir / rundir.METRICS, metrics)
    if rewards:
        _plot_reward(rewards, run_dir / "reward.png", f"RLEF on {base_name}")
    write_run_report(run_dir)
    return metrics


TRAINER_STATE_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json",
                       "training_args.bin")  # fmt: skip


def _weights_from_checkpoint(checkpoint: Path, out: Path) -> None:
    """The model files of a Trainer checkpoint (the adapter, or the full model), without the
    optimizer, scheduler and RNG state."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    for path in checkpoint.iterdir():
        if (
            path.is_file()
            and path.name not in TRAINER_STATE_FILES
            and not path.name.startswith("rng_state")
        ):
            shutil.copy2(path, out / path.name)


def _plot_reward(rewards: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(rewards) + 1), rewards, marker=".", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("mean episode reward")
    ax.set_ylim(-1.5, 1.1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
