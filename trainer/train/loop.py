"""One training run: TRL's trainer for the method, fixloop's run directory around it.

`run_training(cfg, ...)` loads the base (GGUF dequantized by transformers, or an HF dir),
adds LeTI's tokens when the method needs them, builds the TRL trainer (LoRA by default,
see `trainer.train.trainers`), writes the run's config, data manifest hash and base config,
evaluates on the validation rows, trains (resuming from the run's last Trainer checkpoint
with `resume=`), evaluates again, and saves the adapter (or the full model), the tokenizer,
metrics.json and loss.png. The same code runs on CPU, one GPU, or under `accelerate launch`
/ torchrun (DDP, DeepSpeed, FSDP: the Trainer's own support).
"""

from __future__ import annotations

import contextlib
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.train import rundir
from trainer.train.config import TrainConfig
from trainer.train.data import DataError, files_sha256, load_examples, manifest_info
from trainer.train.modeling import (
    BaseSource,
    add_leti_tokens,
    base_config,
    load_model,
    load_tokenizer,
    peft_compat,
    resolve_base,
)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    is_main: bool = True  # False on the other processes of an `accelerate launch` run


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "fixloop"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def _use_bf16(cfg: TrainConfig) -> bool:
    """bf16 (weights, and autocast) where the hardware multiplies it natively: a CUDA GPU
    that supports it, or a CPU with bf16 instructions (`agent.cpu.cpu_has_bf16`); fp32
    elsewhere, where torch would emulate bf16 slowly. --bf16/--no-bf16 override."""
    import torch

    from agent.cpu import cpu_has_bf16

    if torch.cuda.is_available():
        supported, where = torch.cuda.is_bf16_supported(), "this GPU"
    else:
        supported, where = cpu_has_bf16(), "this CPU"
    if cfg.bf16 and not supported:
        raise ValueError(
            f"--bf16: {where} has no native bf16 (a CUDA GPU with bf16, or a CPU with "
            "avx512_bf16, amx_bf16 or bf16 in /proc/cpuinfo); drop the flag to train in fp32."
        )
    return supported if cfg.bf16 is None else cfg.bf16


def resumed_config(began: dict[str, Any]) -> TrainConfig:
    """The run's config as it started, from its config.json record. A run that began in fp32
    where bf16 was not chosen for it (one from before CPUs got bf16, or on a machine without
    it) resumes in fp32; one begun in bf16 where there is none now: `precision_change`."""
    cfg = TrainConfig.model_validate(began["config"])
    if cfg.bf16 is None and began.get("bf16") is False:
        cfg = cfg.model_copy(update={"bf16": False})
    return cfg


def precision_change(run_name: str, began_bf16: bool | None, bf16: bool) -> str | None:
    """The warning for a run begun in bf16 and resumed where only fp32 is native; None when
    its precision stays. (One begun in fp32 stays fp32: `resumed_config`.)"""
    if not began_bf16 or bf16:
        return None
    return (
        f"warning: {run_name} began in bf16 and resumes in fp32, as this machine has no native "
        "bf16. It goes on (the adapter's weights are fp32), but its steps from here are "
        "computed in another precision; resume it on a machine with bf16 to keep one."
    )


def _retarget(
    run_dir: Path, began: dict[str, Any], cfg: TrainConfig, max_steps: int
) -> TrainConfig:
    """The resumed run's config with a new step target, recorded in its config.json."""
    if cfg.method != "rlef":
        raise ValueError(
            f"--max-steps with --resume changes the length of RLEF runs only; {run_dir.name} "
            f"is a {cfg.method} run, whose learning-rate schedule was fixed by its length at "
            "the start: start a new run with the --max-steps you want"
        )
    cfg = cfg.model_copy(update={"max_steps": max_steps})
    began["config"] = cfg.model_dump(mode="json")
    rundir.write_json(run_dir / rundir.CONFIG, began)
    return cfg


def _validation_rows(cfg: TrainConfig) -> list[dict[str, Any]]:
    """The validation split's rows; [] when training on all rows or none exist."""
    if cfg.split != "train":
        return []
    with contextlib.suppress(DataError):
        return load_examples(
            cfg.data_dir,
            cfg.method,
            None,
            "validation",
            with_repair=cfg.with_repair,
            preferences=cfg.preferences,
        )
    return []


def _eval_loss(trainer: Any) -> float | None:
    if not trainer.eval_dataset:
        return None
    return round(float(trainer.evaluate()["eval_loss"]), 6)


def run_training(
    cfg: TrainConfig | None,
    *,
    cache_dir: Path,
    registry_dir: Path,
    resume: Path | None = None,
    max_steps: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume the run in `resume`) and return the run directory and its metrics.

    `max_steps` with `resume` moves an RLEF run's end (its learning rate is constant, so the
    length is free): later to go on, or at its last checkpoint to finish it there.
    """
    began: dict[str, Any] = {}  # a resumed run's config.json, read once
    if resume is not None:
        began = rundir.read_json(resume / rundir.CONFIG)
        cfg = resumed_config(began)
        if max_steps is not None:
            cfg = _retarget(resume, began, cfg, max_steps)
    if cfg is None:
        raise ValueError("give a TrainConfig, or a run directory to resume")
    if cfg.method == "rlef":
        from trainer.rlef.run import run_rlef

        run_dir, metrics = run_rlef(
            cfg, cache_dir=cache_dir, registry_dir=registry_dir, resume=resume, progress=progress
        )
        return TrainResult(run_dir, metrics)
    rows = load_examples(  # fail early
        cfg.data_dir,
        cfg.method,
        cfg.limit,
        cfg.split,
        with_repair=cfg.with_repair,
        preferences=cfg.preferences,
    )
    val_rows = _validation_rows(cfg)

    import datasets
    import torch
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    from trainer.train.memory import decide_checkpointing
    from trainer.train.trainers import RunDirCallback, build_trainer

    if not progress:
        datasets.disable_progress_bars()
    state = PartialState(cpu=not torch.cuda.is_available())  # as the Trainer's (use_cpu)
    main = state.is_main_process
    bf16 = _use_bf16(cfg)
    ckpt = None
    if resume is not None:
        run_dir, ckpt = resume, rundir.latest_checkpoint(resume)
        base = BaseSource.from_dict(began["base"])
        if main and (warning := precision_change(resume.name, began.get("bf16"), bf16)):
            print(warning, file=sys.stderr)
        if files_sha256(cfg.data_files) != rundir.read_json(resume / rundir.DATA)["dataset_sha256"]:
            raise rundir.RunDirError(
                f"{cfg.data_file} changed since {resume.name} started; a resumed run must see "
                "the same data. Start a new run (`fixloop train ...`) instead."
            )
        if ckpt is None and main:
            print(f"no checkpoint in {run_dir}; starting it from step 0", file=sys.stderr)
    else:
        # The main process provisions the base (it may assemble a GGUF) before the others.
        with state.main_process_first():
            base = resolve_base(cfg.base, cache_dir=cache_dir, data_dir=registry_dir)
        # Every process must write to the same run directory: the main process names it.
        shared = [str(rundir.new_run_dir(cfg.out_dir, cfg.method))]
        broadcast_object_list(shared)
        run_dir = Path(shared[0])

    tokenizer = load_tokenizer(base)
    model = load_model(base, torch.bfloat16 if (bf16 and cfg.lora) else torch.float32)
    base_cfg = base_config(model)  # before any resize: what a GGUF LoRA applies to
    new_ids = add_leti_tokens(tokenizer, model) if cfg.needs_leti_tokens else []
    n_total = sum(p.numel() for p in model.parameters())
    if cfg.gradient_checkpointing is None:
        # One decision for every process (the main one's), each counted against the memory
        # they share on a CPU host; a GPU's free memory is its own process's.
        sharers = 1 if torch.cuda.is_available() else state.num_processes
        decided = [
            decide_checkpointing(
                model, n_params=n_total, rows=cfg.batch_size, tokens=cfg.max_len,
                sharers=sharers, main=main,
            ) if main else None
        ]  # fmt: skip
        broadcast_object_list(decided)
        cfg = cfg.model_copy(update={"gradient_checkpointing": bool(decided[0])})
    with peft_compat():
        trainer = build_trainer(
            cfg,
            model,
            tokenizer,
            rows,
            val_rows,
            output_dir=run_dir / rundir.CHECKPOINTS,
            bf16=bf16,
            new_token_ids=new_ids,
            callbacks=[RunDirCallback(run_dir, cfg.method, progress=progress)],
        )
    kept = len(trainer.train_dataset)  # TRL leaves out rows whose prompt fills max_len
    if kept < len(rows) and main:
        print(f"warning: {len(rows) - kept} of {len(rows)} rows left out: the prompt fills "
              f"--max-len {cfg.max_len}", file=sys.stderr)  # fmt: skip
    if kept == 0:
        raise DataError(f"no row of {cfg.data_file} fits --max-len {cfg.max_len}; raise it.")
    if main and ckpt is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        manifest, manifest_sha = manifest_info(cfg.data_dir)
        rundir.write_json(
            run_dir / rundir.CONFIG,
            {
                "config": cfg.model_dump(mode="json"),
                "base": base.as_dict(),
                "leti_token_ids": new_ids,
                "versions": _versions(),
                "processes": state.num_processes,
                "device": str(state.device),
                "bf16": bf16,
            },
        )
        rundir.write_json(
            run_dir / rundir.DATA,
            {
                "data_dir": str(cfg.data_dir.resolve()),
                "manifest": str(manifest) if manifest else None,
                "manifest_sha256": manifest_sha or None,
                "dataset_file": str(cfg.data_file.resolve()),
                "dataset_sha256": files_sha256(cfg.data_files),
                "examples": kept,
                "left_out": len(rows) - kept,
            },
        )
        base_cfg.save_pretrained(run_dir / rundir.BASE_CONFIG)
    state.wait_for_everyone()

    with peft_compat():
        val_before = _eval_loss(trainer) if ckpt is None else None
        trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
        val_after = _eval_loss(trainer)

    if cfg.lora:
        # Gathered on every process (ZeRO-3 and FSDP shard the weights), written by the main
        # one. The new tokens' rows are in the adapter (trainable tokens): no embedding copy.
        weights = trainer.accelerator.get_state_dict(trainer.model)
        if main:
            trainer.accelerator.unwrap_model(trainer.model).save_pretrained(
                run_dir / rundir.ADAPTER, state_dict=weights, save_embedding_layers=False
            )
    else:
        trainer.save_model(str(run_dir / rundir.FULL_MODEL))
        if main:
            tokenizer.save_pretrained(run_dir / rundir.FULL_MODEL)
    metrics: dict[str, Any] = {}
    if main:
        tokenizer.save_pretrained(run_dir / rundir.TOKENIZER)
        history = rundir.read_history(run_dir)
        n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        metrics = _summary(cfg, history, n_trainable, n_total, kept)
        metrics.update(val_examples=len(val_rows), val_loss_before=val_before)
        metrics["val_loss_after"] = val_after
        rundir.write_json(run_dir / rundir.METRICS, metrics)
        if history:
            method = f"{cfg.method} + {cfg.rpo_alpha} x NLL" if cfg.rpo_alpha else cfg.method
            rundir.plot_loss(history, run_dir / rundir.LOSS_PNG, f"{method} on {base.name}")
    state.wait_for_everyone()
    return TrainResult(run_dir, metrics, main)


def describe_loss(metrics: dict[str, Any]) -> str:
    """The training loss from start to end, like with like: means over the first and last
    tenth of the steps (one step against a mean read a 0.03-0.20 swing as "no change")."""
    start = metrics.get("start_loss")
    if start is None:  # metrics.json written before start_loss existed
        return f"loss {metrics['first_loss']:.4f} -> {metrics['final_loss']:.4f}"
    n = metrics.get("loss_window", 1)
    steps = "step" if n == 1 else f"{n} steps"
    lowest = f"; min {metrics['min_loss']:.4f}" if metrics.get("min_loss") is not None else ""
    final = metrics["final_loss"]
    return f"loss {start:.4f} -> {final:.4f} (mean of the first and last {steps}{lowest})"


def _summary(
    cfg: TrainConfig, history: list[dict[str, Any]], n_trainable: int, n_total: int, n: int
) -> dict[str, Any]:
    """metrics.json, from history.jsonl (so a resumed run counts its first part too)."""
    import torch

    losses = [h["loss"] for h in history]
    window = max(1, len(losses) // 10)
    head, tail = losses[:window], losses[-window:]
    tokens = sum(h.get("tokens", 0) for h in history)
    seconds = sum(h.get("seconds", 0.0) for h in history)
    last = history[-1] if history else {}
    out: dict[str, Any] = {
        "method": cfg.method,
        "steps": len(history),
        "examples": n,
        "first_loss": losses[0] if losses else None,
        "start_loss": sum(head) / len(head) if head else None,
        "final_loss": sum(tail) / len(tail) if tail else None,
        "loss_window": window,
        "min_loss": min(losses) if losses else None,
        "tokens": tokens,
        "train_seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
        "trainable_params": n_trainable,
        "total_params": n_total,
    }
    # DPO's reward accuracy and margin (beta-scaled, as TRL logs them), KTO's KL estimate.
    # logps/chosen: the chosen replies' log-likelihood, which plain DPO can lower (RPO's point).
    logged_keys = (
        ("reward_acc", "rewards/accuracies"),
        ("margin", "rewards/margins"),
        ("chosen_logp", "logps/chosen"),
    )
    for key, logged in logged_keys:
        if logged in last:
            out[key] = last[logged]
    if "kl" in last:
        out["kl"] = last["kl"]
    if torch.cuda.is_available():
        out["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out
