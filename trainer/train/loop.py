"""One training run with accelerate: the same code on CPU, one GPU, or `accelerate launch`.

`run_training(cfg, ...)` loads the base (GGUF or HF dir), adds LeTI's tokens when the
method needs them, wraps it in LoRA (or trains it fully), and optimizes the method's
objective with a tqdm bar (loss, tokens/s), checkpoints every `save_every` steps, and
resumes from the last checkpoint. bf16 autocast on CUDA when supported.

Checkpoints hold only the trainable weights (the LoRA adapter, or everything for --full),
the optimizer, scheduler and RNG states: DDP-safe; FSDP sharded states are not supported.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import math
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.train import rundir
from trainer.train.config import TrainConfig
from trainer.train.data import file_sha256, load_examples, manifest_info
from trainer.train.modeling import (
    BaseSource,
    add_leti_tokens,
    load_model,
    load_tokenizer,
    resolve_base,
    wrap_lora,
)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    is_main: bool = True  # False on the other processes of an `accelerate launch` run


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "accelerate", "fixloop"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def _use_bf16(cfg: TrainConfig) -> bool:
    import torch

    if cfg.bf16 is not None:
        if cfg.bf16 and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
            raise ValueError("--bf16 needs a CUDA GPU with bf16 support; drop the flag on CPU.")
        return cfg.bf16
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _run_config(cfg: TrainConfig | None, resume: Path | None) -> tuple[TrainConfig, Path | None]:
    """The config of a new run, or the one a resumed run started with."""
    if resume is not None:
        meta = rundir.read_json(resume / rundir.CONFIG)
        return TrainConfig.model_validate(meta["config"]), resume
    if cfg is None:
        raise ValueError("give a TrainConfig, or a run directory to resume")
    return cfg, None


def run_training(
    cfg: TrainConfig | None,
    *,
    cache_dir: Path,
    registry_dir: Path,
    resume: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume the run in `resume`) and return the run directory and its metrics."""
    cfg, resumed = _run_config(cfg, resume)
    examples = load_examples(cfg.data_dir, cfg.method, cfg.limit, cfg.split)  # fail early

    import torch
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list, set_seed
    from tqdm import tqdm
    from transformers import get_scheduler

    from trainer.train.batches import Collator, EpochSampler, tokenize_all
    from trainer.train.losses import dpo_loss, forward_logps, kto_loss, lm_loss

    bf16 = _use_bf16(cfg)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum, mixed_precision="bf16" if bf16 else "no"
    )
    if resumed is not None:
        run_dir = resumed
        base = BaseSource.from_dict(rundir.read_json(resumed / rundir.CONFIG)["base"])
        started_on = rundir.read_json(resumed / rundir.DATA)["dataset_sha256"]
        if file_sha256(cfg.data_file) != started_on:
            raise rundir.RunDirError(
                f"{cfg.data_file} changed since {resumed.name} started; a resumed run must see "
                "the same data. Start a new run (`fixloop train ...`) instead."
            )
    else:
        # The main process provisions the base (it may assemble a GGUF) before the others.
        with accelerator.main_process_first():
            base = resolve_base(cfg.base, cache_dir=cache_dir, data_dir=registry_dir)
        # Every process must write to the same run directory: the main process names it.
        shared = [str(rundir.new_run_dir(cfg.out_dir, cfg.method))]
        broadcast_object_list(shared)
        run_dir = Path(shared[0])
    set_seed(cfg.seed)
    main = accelerator.is_main_process

    tokenizer = load_tokenizer(base)
    dtype = torch.bfloat16 if (bf16 and cfg.lora) else torch.float32
    model = load_model(base, dtype)
    base_config = copy.deepcopy(model.config)  # before any resize: what a GGUF LoRA applies to
    if not base_config.architectures:
        base_config.architectures = [type(model).__name__]
    new_ids = add_leti_tokens(tokenizer, model) if cfg.needs_leti_tokens else []
    items = tokenize_all(cfg.method, examples, tokenizer, cfg.max_len)
    if cfg.gradient_checkpointing:
        # Non-reentrant checkpointing lets gradients reach LoRA weights of a frozen base.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    preference = cfg.method in ("dpo", "kto")
    ref_model = None
    if preference and not cfg.lora:
        ref_model = copy.deepcopy(model).eval().requires_grad_(False).to(accelerator.device)
    if cfg.lora:
        model = wrap_lora(model, cfg, new_ids)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())

    sampler = EpochSampler(len(items), cfg.seed)
    loader = torch.utils.data.DataLoader(
        items,  # type: ignore[arg-type]
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=Collator(tokenizer.pad_token_id),
    )
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = max(1, math.ceil(len(loader) / cfg.grad_accum))
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    scheduler = get_scheduler(
        "cosine",
        optimizer,
        num_warmup_steps=int(cfg.warmup_ratio * total) * accelerator.num_processes,
        num_training_steps=total * accelerator.num_processes,
    )
    scheduler = accelerator.prepare(scheduler)

    step, epoch, skip, history, elapsed, tokens_seen = 0, 0, 0, [], 0.0, 0
    resume_rng = None
    ckpt = rundir.latest_checkpoint(run_dir) if resume is not None else None
    if ckpt is not None:
        state, resume_rng = _load_checkpoint(ckpt, accelerator, model, optimizer, scheduler)
        step, epoch, skip = state["step"], state["epoch"], state["batch_in_epoch"]
        elapsed, tokens_seen = state["elapsed_s"], state["tokens"]
        history = [h for h in rundir.read_history(run_dir) if h["step"] <= step]
    elif resume is not None and main:
        print(f"no checkpoint in {run_dir}; starting it from step 0", file=sys.stderr)

    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        manifest, manifest_sha = manifest_info(cfg.data_dir)
        if ckpt is None:
            rundir.write_json(
                run_dir / rundir.CONFIG,
                {
                    "config": cfg.model_dump(mode="json"),
                    "base": base.as_dict(),
                    "leti_token_ids": new_ids,
                    "versions": _versions(),
                    "processes": accelerator.num_processes,
                    "device": str(accelerator.device),
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
                    "dataset_sha256": file_sha256(cfg.data_file),
                    "examples": len(items),
                },
            )
            base_config.save_pretrained(run_dir / rundir.BASE_CONFIG)
        with (run_dir / rundir.HISTORY).open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(h) + "\n" for h in history)
    accelerator.wait_for_everyone()

    def loss_of(batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        if not preference:
            return lm_loss(model, batch)
        seqs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
        policy = forward_logps(model, seqs)
        with torch.no_grad():
            if ref_model is not None:
                ref = forward_logps(ref_model, seqs)
            else:
                with accelerator.unwrap_model(model).disable_adapter():
                    ref = forward_logps(model, seqs)
        if cfg.method == "dpo":
            return dpo_loss(policy, ref, cfg.beta)
        n = batch["desirable"].shape[0]
        return kto_loss(
            policy[:n],
            ref[:n],
            policy[n:],
            ref[n:],
            batch["desirable"],
            cfg.beta,
            cfg.kto_desirable_weight,
            cfg.kto_undesirable_weight,
            gather=accelerator.gather,
        )

    val_items = _validation_items(cfg, tokenizer)

    def val_loss() -> float | None:
        """Mean loss over the held-out validation rows (the data build's split), if any."""
        if not val_items:
            return None
        model.eval()
        collate = Collator(tokenizer.pad_token_id)
        losses = []
        with torch.no_grad():
            for i in range(0, len(val_items), cfg.batch_size):
                batch = collate(val_items[i : i + cfg.batch_size])
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                with accelerator.autocast():
                    losses.append(loss_of(batch)[0].float().item())
        model.train()
        return round(sum(losses) / len(losses), 6)

    val_before = val_loss() if ckpt is None else None
    model.train()
    bar = tqdm(
        total=total,
        initial=step,
        desc=f"train {cfg.method}",
        unit="step",
        disable=not (progress and main),
        file=sys.stderr,
        dynamic_ncols=True,
    )
    window_losses: list[float] = []
    window_extra: dict[str, list[float]] = {}
    window_tokens = 0
    window_start = time.perf_counter()
    done = step >= total
    while not done:
        sampler.set_epoch(epoch)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        batches = iter(accelerator.skip_first_batches(loader, skip) if skip else loader)
        first = next(batches, None)
        if resume_rng is not None:
            # Restored only now: starting the data iterator draws from the torch RNG, which
            # the interrupted run had already done for this epoch (dropout masks match).
            torch.set_rng_state(resume_rng)
            resume_rng = None
        batch_in_epoch = skip
        for batch in itertools.chain([first] if first is not None else [], batches):
            batch_in_epoch += 1
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    loss, extra = loss_of(batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            window_losses.append(loss.detach().float().item())
            for k, v in extra.items():
                window_extra.setdefault(k, []).append(v)
            window_tokens += int(batch["attention_mask"].sum().item())
            if not accelerator.sync_gradients:
                continue
            step += 1
            now = time.perf_counter()
            dt = now - window_start
            stats = torch.tensor(
                [sum(window_losses) / len(window_losses), float(window_tokens)],
                device=accelerator.device,
            )
            stats = accelerator.reduce(stats, "sum")
            mean_loss = stats[0].item() / accelerator.num_processes
            tokens = int(stats[1].item())
            tokens_seen += tokens
            elapsed += dt
            row = {
                "step": step,
                "epoch": epoch,
                "loss": round(mean_loss, 6),
                "lr": scheduler.get_last_lr()[0],
                "tokens": tokens,
                "tokens_per_s": round(tokens / dt, 1) if dt > 0 else None,
                **{k: round(sum(v) / len(v), 6) for k, v in window_extra.items()},
            }
            history.append(row)
            if main:
                with (run_dir / rundir.HISTORY).open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
            bar.set_postfix(loss=f"{mean_loss:.4f}", tok_s=f"{row['tokens_per_s'] or 0:.0f}")
            bar.update(1)
            window_losses, window_extra, window_tokens = [], {}, 0
            window_start = time.perf_counter()
            if step % cfg.save_every == 0 or step >= total:
                _save_checkpoint(
                    run_dir,
                    cfg,
                    accelerator,
                    model,
                    optimizer,
                    scheduler,
                    {
                        "step": step,
                        "epoch": epoch,
                        "batch_in_epoch": batch_in_epoch,
                        "elapsed_s": elapsed,
                        "tokens": tokens_seen,
                    },
                )
            if step >= total:
                done = True
                break
        else:
            epoch += 1
            skip = 0
            continue
    bar.close()

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    metrics = _summary(cfg, history, elapsed, tokens_seen, n_trainable, n_total, len(items))
    metrics["val_examples"] = len(val_items)
    metrics["val_loss_before"] = val_before
    metrics["val_loss_after"] = val_loss()
    if main:
        if cfg.lora:
            # New tokens' rows are in the adapter (trainable tokens): no full embedding copy.
            unwrapped.save_pretrained(run_dir / rundir.ADAPTER, save_embedding_layers=False)
        else:
            unwrapped.save_pretrained(run_dir / rundir.FULL_MODEL)
            tokenizer.save_pretrained(run_dir / rundir.FULL_MODEL)
        tokenizer.save_pretrained(run_dir / rundir.TOKENIZER)
        rundir.write_json(run_dir / rundir.METRICS, metrics)
        if history:
            rundir.plot_loss(history, run_dir / rundir.LOSS_PNG, f"{cfg.method} on {base.name}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(run_dir, metrics, main)


def _validation_items(cfg: TrainConfig, tokenizer: Any) -> list[Any]:
    """The validation split's rows, tokenized; [] when training on all rows or none exist."""
    from trainer.train.batches import tokenize_all
    from trainer.train.data import DataError

    if cfg.split != "train":
        return []
    try:
        examples = load_examples(cfg.data_dir, cfg.method, None, "validation")
    except DataError:
        return []
    try:
        return tokenize_all(cfg.method, examples, tokenizer, cfg.max_len)
    except ValueError:
        return []


def _summary(
    cfg: TrainConfig,
    history: list[dict[str, Any]],
    elapsed: float,
    tokens: int,
    n_trainable: int,
    n_total: int,
    n_examples: int,
) -> dict[str, Any]:
    import torch

    losses = [h["loss"] for h in history]
    tail = losses[-max(1, len(losses) // 10) :] if losses else []
    out: dict[str, Any] = {
        "method": cfg.method,
        "steps": len(history),
        "examples": n_examples,
        "first_loss": losses[0] if losses else None,
        "final_loss": sum(tail) / len(tail) if tail else None,
        "min_loss": min(losses) if losses else None,
        "tokens": tokens,
        "train_seconds": round(elapsed, 3),
        "tokens_per_s": round(tokens / elapsed, 1) if elapsed > 0 else None,
        "trainable_params": n_trainable,
        "total_params": n_total,
    }
    for key in ("reward_acc", "margin", "kl"):
        if history and key in history[-1]:
            out[key] = history[-1][key]
    if torch.cuda.is_available():
        out["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def _trainable_state(model: Any) -> dict[str, Any]:
    return {
        n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad
    }


def _save_checkpoint(
    run_dir: Path,
    cfg: TrainConfig,
    accelerator: Any,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    counters: dict[str, Any],
) -> None:
    import torch
    from safetensors.torch import save_file

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        root = run_dir / rundir.CHECKPOINTS
        target = root / f"step-{counters['step']}"
        tmp = root / f".tmp-step-{counters['step']}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(_trainable_state(accelerator.unwrap_model(model)), tmp / "trainable.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
        rundir.write_json(tmp / "state.json", counters)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        ckpts = sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
        for old in ckpts[: -cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _load_checkpoint(
    ckpt: Path, accelerator: Any, model: Any, optimizer: Any, scheduler: Any
) -> tuple[dict[str, Any], Any]:
    import torch
    from safetensors.torch import load_file

    weights = load_file(ckpt / "trainable.safetensors")
    unwrapped = accelerator.unwrap_model(model)
    result = unwrapped.load_state_dict(weights, strict=False)
    if result.unexpected_keys:
        raise rundir.RunDirError(
            f"{ckpt} does not match this model ({len(result.unexpected_keys)} unknown tensors, "
            f"e.g. {result.unexpected_keys[0]}); start a new run instead of --resume."
        )
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
    rng = torch.load(ckpt / "rng.pt", weights_only=True)
    return rundir.read_json(ckpt / "state.json"), rng["torch"]
