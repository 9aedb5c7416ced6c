"""TRL's trainers, configured with fixloop's settings, and the run directory's callback.

sft / ilf / leti -> SFTTrainer (prompt/completion rows: loss on the completion; LeTI's
conversations and texts: loss on all of it), dpo -> DPOTrainer, kto -> KTOTrainer. With
LoRA (the default) the reference model of DPO/KTO is the base with the adapter switched off;
with --full it is a frozen copy of the base. Every option is set here explicitly, so TRL's
own defaults (learning rate 1e-6 for DPO/KTO, gradient checkpointing and bf16 on) never
apply by accident.

`RunDirCallback` keeps the run directory's history.jsonl (one row per optimizer step) and
the progress bar (loss, tokens/s); the Trainer's own bar and printer are removed.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from trainer.train import rundir
from trainer.train.config import TrainConfig
from trainer.train.cpu_head import add_compact_cpu_head
from trainer.train.data import Row
from trainer.train.modeling import expose_head_bias, lora_config

# Logged by the Trainer but kept under fixloop's own names (or not per step) in history.jsonl.
_NOT_EXTRA = {"loss", "learning_rate", "num_tokens", "epoch"}


def training_args(cfg: TrainConfig, output_dir: Path, bf16: bool) -> dict[str, Any]:
    """The TrainingArguments every method shares."""
    import torch

    # Otherwise each trainer's own order: random, or KTO's fixed one (its KL pairs).
    grouped = {"train_sampling_strategy": "group_by_length"} if cfg.group_by_length else {}
    return {
        **grouped,
        "output_dir": str(output_dir),
        "per_device_train_batch_size": cfg.batch_size,
        "per_device_eval_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps or -1,
        "learning_rate": cfg.lr,
        "lr_scheduler_type": "cosine",
        "warmup_steps": cfg.warmup_ratio,  # a float below 1 is a share of the total steps
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "seed": cfg.seed,
        "bf16": bf16,
        "fp16": False,
        # The new name: the deprecated `gradient_checkpointing` (TRL's default True) warns.
        "activation_checkpointing": bool(cfg.gradient_checkpointing),
        "max_length": cfg.max_len,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": cfg.save_every,
        "save_total_limit": cfg.keep_checkpoints,
        "eval_strategy": "no",  # run_training evaluates before and after, not during
        "report_to": "none",
        "disable_tqdm": True,  # RunDirCallback draws the bar
        "dataloader_pin_memory": torch.cuda.is_available(),
        # Without CUDA: CPU processes, and several of them (torchrun) form a gloo group.
        "use_cpu": not torch.cuda.is_available(),
    }


def build_trainer(
    cfg: TrainConfig,
    model: Any,
    tokenizer: Any,
    train_rows: Sequence[Row],
    eval_rows: Sequence[Row] = (),
    *,
    output_dir: Path,
    bf16: bool = False,
    new_token_ids: Sequence[int] = (),
    callbacks: Sequence[Any] = (),
    compact_cpu_head: bool = True,
) -> Any:
    """The TRL trainer of `cfg.method` on these rows (LoRA-wrapped unless `cfg.lora` is off).

    `compact_cpu_head`: on a CPU, score only labelled positions (`cpu_head`); off, TRL's own
    chunked head runs (the reference in `bench/bench_train.py --trl-head`).
    """
    import copy

    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer

    common = training_args(cfg, output_dir, bf16)
    extra: dict[str, Any] = {}
    train = Dataset.from_list(list(train_rows))
    if cfg.method == "dpo":
        # RPO: DPO plus the chosen reply's NLL, which TRL spells as a second loss type.
        nll = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, cfg.rpo_alpha]}
        cls, args = DPOTrainer, DPOConfig(beta=cfg.beta, **(nll if cfg.rpo_alpha else {}), **common)
    elif cfg.method == "kto":
        cls = KTOTrainer
        args = KTOConfig(
            beta=cfg.beta,
            desirable_weight=cfg.kto_desirable_weight,
            undesirable_weight=cfg.kto_undesirable_weight,
            **common,
        )
        # KTO reads its rows in order (each batch's KL pairs are built from neighbours), so
        # the rows are shuffled once here; data build writes a task's rows side by side.
        train = train.shuffle(seed=cfg.seed).flatten_indices()
    else:
        cls, args = SFTTrainer, SFTConfig(dataset_text_field="text", packing=False, **common)
    if cfg.method in ("dpo", "kto") and not cfg.lora:
        extra["ref_model"] = copy.deepcopy(model).eval().requires_grad_(False)
    trainer = cls(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=Dataset.from_list(list(eval_rows)) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(cfg, list(new_token_ids)) if cfg.lora else None,
        callbacks=list(callbacks),
        **extra,
    )
    if cfg.lora:
        # Checkpoints hold the adapter only: peft's "auto" would add the whole embedding
        # matrices when the vocabulary grew (LeTI), and look the base up on the Hub to decide.
        trainer.model.save_pretrained = functools.partial(
            trainer.model.save_pretrained, save_embedding_layers=False
        )
        if new_token_ids:
            expose_head_bias(trainer.model)
    if compact_cpu_head:
        peft_wrapped = hasattr(trainer.model, "get_base_model")
        add_compact_cpu_head(trainer.model.get_base_model() if peft_wrapped else trainer.model)
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    return trainer


class RunDirCallback(TrainerCallback):
    """history.jsonl, one row per optimizer step, and the progress bars (loss, tokens/s; the
    held-out evaluations)."""

    def __init__(self, run_dir: Path, method: str, *, progress: bool = True) -> None:
        self.run_dir = run_dir
        self.method = method
        self.progress = progress
        self.bar: Any = None
        self.eval_bar: Any = None
        self.tokens_seen = 0
        self.last = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=state.max_steps,
            initial=state.global_step,
            desc=f"train {self.method}",
            unit="step",
            disable=not (self.progress and state.is_world_process_zero),
            file=sys.stderr,
            dynamic_ncols=True,
        )
        self.tokens_seen = 0  # TRL counts tokens from the start of this process's training
        self.last = time.perf_counter()
        if state.is_world_process_zero:  # a resumed run's history goes up to its checkpoint
            rundir.keep_steps_until(self.run_dir / rundir.HISTORY, state.global_step)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        if self.bar is None or not logs or "loss" not in logs:
            return  # evaluation, or the end-of-training summary
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        seen = int(logs.get("num_tokens", self.tokens_seen))
        tokens, self.tokens_seen = seen - self.tokens_seen, seen
        row = {
            "step": state.global_step,
            "epoch": round(float(state.epoch or 0.0), 4),
            "loss": round(float(logs["loss"]), 6),
            "lr": logs.get("learning_rate"),
            "tokens": tokens,
            "seconds": round(seconds, 4),
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
        }
        for key, value in logs.items():
            if key not in _NOT_EXTRA and isinstance(value, int | float):
                row[key] = round(float(value), 6)
        if state.is_world_process_zero:
            rundir.append_history(self.run_dir, row)
        self.bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=f"{row['tokens_per_s'] or 0:.0f}")
        self.bar.update(state.global_step - self.bar.n)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()

    def on_prediction_step(
        self, args: Any, state: Any, control: Any, eval_dataloader: Any = None, **kw: Any
    ) -> None:
        """The held-out loss before and after training: minutes on a CPU, so a bar too."""
        if self.eval_bar is None:
            from tqdm import tqdm

            self.eval_bar = tqdm(
                total=len(eval_dataloader) if hasattr(eval_dataloader, "__len__") else None,
                desc="held-out loss",
                unit="batch",
                disable=not (self.progress and state.is_world_process_zero),
                file=sys.stderr,
                dynamic_ncols=True,
            )
        self.eval_bar.update(1)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.eval_bar is not None:
            self.eval_bar.close()
            self.eval_bar = None
