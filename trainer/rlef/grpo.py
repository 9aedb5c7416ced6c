"""RLEF on TRL's GRPOTrainer: the agent's episodes as rollouts, the sandbox's verdict as reward.

RLEF (Gehring et al. 2024) optimizes the episode reward with PPO and a learned critic; TRL no
longer ships PPO, and GRPO's group baseline (the mean reward of the `num_generations`
episodes of one task) takes the critic's place. The KL penalty to the initial policy stays
(`beta` > 0; with LoRA the reference is the base with the adapter switched off).

`rollout_func` plays the episodes (`EpisodePlayer`); TRL masks the feedback tokens out of
the loss through the returned `env_mask`, and `episode_reward` hands TRL the rewards the
rollout computed. In TRL 1.16 without vLLM each prompt reaches `rollout_func` already
repeated `num_generations` times, so it returns exactly one episode per prompt it receives.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.events import Task
from trainer.rlef.rollout import EpisodePlayer, Rollout


@dataclass
class RewardLog:
    """Every rollout's reward, in order: the run's reward curve. With `path`, every episode
    is also appended there as a JSON line (task, reward, turns, verdicts, the model's
    replies), so a run's rollouts can be read, not only its mean reward."""

    steps: list[list[float]] = field(default_factory=list)
    public_only: set[str] = field(default_factory=set)  # tasks rewarded on public tests
    path: Path | None = None

    def mean_by_step(self) -> list[float]:
        return [sum(r) / len(r) for r in self.steps if r]

    def add(self, step: int, prompts: list[Any], played: list[Rollout]) -> None:
        self.steps.append([r.reward for r in played])
        pairs = list(zip(prompts, played, strict=True))
        self.public_only |= {str(p) for p, r in pairs if r.rewarded_on == "public"}
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                for prompt, rollout in pairs:
                    row = {"step": step, "task": str(prompt), **rollout.summary()}
                    fh.write(json.dumps(row) + "\n")


def task_dataset(tasks: Sequence[Task]) -> tuple[Any, dict[str, Task]]:
    """A `datasets.Dataset` of prompts (one task key each) and the tasks by key."""
    from datasets import Dataset

    by_key: dict[str, Task] = {}
    for i, task in enumerate(tasks):
        by_key[task.task_id or f"task-{i}"] = task
    return Dataset.from_dict({"prompt": list(by_key)}), by_key


def make_rollout_func(
    player: EpisodePlayer, tasks: dict[str, Task], log: RewardLog | None = None
) -> Callable[[list[Any], Any], dict[str, Any]]:
    """TRL's `rollout_func`: play one episode per prompt received (see the module note)."""

    def rollout(prompts: list[Any], trainer: Any) -> dict[str, Any]:
        import torch

        model = trainer.model
        was_training = model.training
        model.eval()  # no dropout while sampling
        try:
            with torch.no_grad():
                played: list[Rollout] = player.play(model, [tasks[str(p)] for p in prompts])
        finally:
            model.train(was_training)
        if log is not None:
            log.add(trainer.state.global_step + 1, prompts, played)
        return {
            "prompt_ids": [r.prompt_ids for r in played],
            "completion_ids": [r.completion_ids for r in played],
            "logprobs": [r.logprobs for r in played],
            "env_mask": [r.env_mask for r in played],
            "episode_reward": [r.reward for r in played],
        }

    return rollout


def episode_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
    """The reward the rollout computed (+1/-1 on the hidden tests, minus format penalties)."""
    return [float(r) for r in kwargs["episode_reward"]]


@dataclass
class RlefSettings:
    num_generations: int = 4  # episodes per task: GRPO's group
    tasks_per_step: int = 1  # groups per optimizer step
    max_turns: int = 3
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_k: int = 0  # 0: the whole vocabulary
    beta: float = 0.04  # KL to the initial policy
    format_penalty: float = 0.2
    learning_rate: float = 1e-5
    max_steps: int = 50
    seed: int = 0
    workers: int = 2  # sandbox jobs in parallel


def grpo_trainer(
    model: Any,
    tokenizer: Any,
    env: Any,
    tasks: Sequence[Task],
    output_dir: str,
    settings: RlefSettings,
    *,
    peft_config: Any = None,
    log: RewardLog | None = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """A GRPOTrainer set up for RLEF on `tasks`, every option fixloop's own."""
    import os

    from trl import GRPOConfig, GRPOTrainer

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental
    dataset, by_key = task_dataset(tasks)
    player = EpisodePlayer(
        env,
        tokenizer,
        max_turns=settings.max_turns,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_k=settings.top_k,
        format_penalty=settings.format_penalty,
        workers=settings.workers,
    )
    config = GRPOConfig(
        output_dir=output_dir,
        # one episode per forward/backward, a group per optimizer step: the logits of a
        # 3-turn episode over Qwen's 152k vocabulary are GBs, and four at once in fp32 took
        # the 0.5B past 24 GB (OOM-killed at its first step on this machine)
        per_device_train_batch_size=1,
        gradient_accumulation_steps=settings.num_generations * settings.tasks_per_step,
        num_generations=settings.num_generations,
        max_completion_length=settings.max_turns * (settings.max_new_tokens + 512),
        temperature=settings.temperature,
        beta=settings.beta,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",  # online RL: no schedule tied to a fixed dataset pass
        max_steps=settings.max_steps,
        seed=settings.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not _cuda(),
        bf16=False,
        activation_checkpointing=False,
        disable_tqdm=True,
        vllm_importance_sampling_correction=False,
    )
    with trl_quirks():
        return GRPOTrainer(
            model=model,
            reward_funcs=[episode_reward],
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            rollout_func=make_rollout_func(player, by_key, log),
            callbacks=callbacks,
        )


@contextlib.contextmanager
def trl_quirks() -> Iterator[None]:
    """TRL 1.16 asks transformers 5.24 for the deprecated `is_gradient_checkpointing` while it
    sets up and around every generation; that one FutureWarning is TRL's to fix, not the
    user's, and pytest's warnings-as-errors would make it a failure."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield


def train(trainer: Any) -> Any:
    """`trainer.train()` without TRL's deprecation noise (resumes from a checkpoint dir)."""
    with trl_quirks():
        return trainer.train()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
