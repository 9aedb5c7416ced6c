"""`fixloop train`, `fixloop export`, `fixloop gate`, `fixloop retrain`: the offline loop.

torch, transformers, peft and llama_cpp are imported only when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fixloop.cli.common import fail, settings

MethodOpt = Annotated[
    str, typer.Option("--method", help="sft | leti | ilf | dpo | kto (the dataset it trains on).")
]
BaseOpt = Annotated[
    str | None,
    typer.Option(
        "--base", help="Registered model, .gguf file or HF dir (default: the current model)."
    ),
]
DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data", help="Dataset dir from `fixloop data build` (default: DATA_DIR/datasets)."
    ),
]
LoraOpt = Annotated[bool, typer.Option("--lora/--full", help="LoRA adapter or all weights.")]
EpochsOpt = Annotated[float, typer.Option("--epochs", min=0.01)]
LrOpt = Annotated[float, typer.Option("--lr", help="Peak learning rate.")]
MaxStepsOpt = Annotated[int | None, typer.Option("--max-steps", min=1, help="Stop after N steps.")]
BatchOpt = Annotated[
    int, typer.Option("--batch-size", min=1, help="Sequences (or pairs) per device per step.")
]
AccumOpt = Annotated[int, typer.Option("--grad-accum", min=1)]
MaxLenOpt = Annotated[int, typer.Option("--max-len", min=16, help="Tokens per sequence.")]
RankOpt = Annotated[int, typer.Option("--lora-r", min=1)]
OutOpt = Annotated[Path, typer.Option("--out", help="Parent of the run directory.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Train on the first N rows.")]
SeedOpt = Annotated[int, typer.Option("--seed")]
CheckpointingOpt = Annotated[
    bool,
    typer.Option("--gradient-checkpointing", help="Trade compute for memory (large models)."),
]
SaveOpt = Annotated[int, typer.Option("--save-every", min=1, help="Checkpoint every N steps.")]
QuantOpt = Annotated[str, typer.Option("--quant", help="Q4_K_M (default) or Q8_0.")]
LoraOnlyOpt = Annotated[
    bool, typer.Option("--lora-only", help="Export the adapter alone as a GGUF LoRA.")
]

# Options of `train` and `retrain` that map one to one onto TrainConfig fields.
SHARED_TRAIN_OPTIONS = (
    "method",
    "lora",
    "epochs",
    "lr",
    "max_steps",
    "batch_size",
    "grad_accum",
    "max_len",
    "lora_r",
    "limit",
    "seed",
    "save_every",
    "gradient_checkpointing",
)


def _train_config(opts: dict[str, Any]) -> Any:
    """A TrainConfig from the training options `train` and `retrain` share (their locals)."""
    from pydantic import ValidationError

    from trainer.train.config import METHODS, TrainConfig

    o = {k: opts[k] for k in SHARED_TRAIN_OPTIONS}
    if o["method"] not in METHODS:
        fail(f"--method {o['method']!r} is not one of {', '.join(METHODS)}.")
    cfg = settings()
    try:
        return TrainConfig(
            **o,
            base=opts["base"] or cfg.model,
            data_dir=opts["data"] or cfg.data_dir / "datasets",
            out_dir=opts["out"],
            lora_alpha=2 * o["lora_r"],
        )
    except ValidationError as exc:
        fail(f"invalid training options: {exc.errors()[0]['msg']}")


def train(
    method: MethodOpt = "leti",
    base: BaseOpt = None,
    data: DataOpt = None,
    lora: LoraOpt = True,
    epochs: EpochsOpt = 1.0,
    lr: LrOpt = 2e-4,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchOpt = 4,
    grad_accum: AccumOpt = 1,
    max_len: MaxLenOpt = 1024,
    lora_r: RankOpt = 16,
    out: OutOpt = Path("runs"),
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    save_every: SaveOpt = 100,
    gradient_checkpointing: CheckpointingOpt = False,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this run dir from its checkpoint.")
    ] = None,
) -> None:
    """Fine-tune on a dataset from `fixloop data build` (runs under `accelerate launch` too)."""
    from trainer.train.data import DataError
    from trainer.train.loop import run_training
    from trainer.train.modeling import BaseModelError
    from trainer.train.rundir import RunDirError

    cfg = settings()
    train_cfg = None
    if resume is None:
        train_cfg = _train_config(locals())
    try:
        result = run_training(
            train_cfg,
            cache_dir=cfg.cache_dir,
            registry_dir=cfg.data_dir,
            resume=resume,
            progress=True,
        )
    except (DataError, BaseModelError, RunDirError, ValueError) as exc:
        fail(str(exc))
    if not result.is_main:
        return
    m = result.metrics
    typer.echo(
        f"run: {result.run_dir}\n"
        f"steps {m['steps']}  loss {m['first_loss']:.4f} -> {m['final_loss']:.4f}  "
        f"{m['tokens_per_s']} tokens/s  {m['train_seconds']} s"
        + (f"  peak GPU {m['peak_gpu_mem_gb']} GiB" if "peak_gpu_mem_gb" in m else "")
        + (
            f"\nvalidation loss {m['val_loss_before']} -> {m['val_loss_after']} "
            f"({m['val_examples']} rows)"
            if m.get("val_loss_after") is not None
            else ""
        )
        + f"\nnext: fixloop export {result.run_dir}"
    )


def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished `fixloop train` run directory.")],
    quant: QuantOpt = "Q4_K_M",
    lora_only: LoraOnlyOpt = False,
    name: Annotated[str | None, typer.Option("--name", help="Version name to register.")] = None,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Load and generate.")] = True,
) -> None:
    """Merge (or keep the LoRA), convert to GGUF, quantize, check, register (inactive)."""
    from trainer.export.check import GenerationCheckError
    from trainer.export.converter import ConverterError
    from trainer.export.pipeline import ExportError, export_run
    from trainer.export.quantize import QuantizeError
    from trainer.train.rundir import RunDirError

    cfg = settings()
    try:
        result = export_run(
            run_dir,
            cache_dir=cfg.cache_dir,
            data_dir=cfg.data_dir,
            quant=quant,
            lora_only=lora_only,
            name=name,
            check=check,
        )
    except (
        ExportError,
        ConverterError,
        QuantizeError,
        GenerationCheckError,
        RunDirError,
        ValueError,
    ) as exc:
        fail(str(exc))
    typer.echo(f"registered {result.name}: {result.gguf}")
    if result.adapter:
        typer.echo(f"  adapter: {result.adapter}")
    if result.check:
        typer.echo(f"  check: generated {result.check.tokens} tokens: {result.check.text!r}")
    typer.echo(f"next: fixloop gate {result.name}   (or: fixloop models use {result.name})")


def gate(
    candidate: Annotated[str, typer.Argument(help="The registered version to judge.")],
    current: Annotated[
        str | None, typer.Option("--current", help="Compare against (default: current model).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="First N MBPP validation tasks.")
    ] = None,
    max_turns: Annotated[int | None, typer.Option("--max-turns", min=1)] = None,
    workers: Annotated[int, typer.Option("--workers", min=1)] = 2,
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="Switch if it passes.")
    ] = True,
    require_significant: Annotated[
        bool, typer.Option("--require-significant", help="Need a gain beyond noise.")
    ] = False,
) -> None:
    """Evaluate candidate vs current on held-out tasks; promote only if not worse."""
    from agent.models.registry import UnknownModelError
    from evals.runner import EvalError
    from evals.suites import SuiteError
    from trainer.gate import GateError, gate_tasks, run_gate

    cfg = settings()
    try:
        tasks = gate_tasks(sessions_dir=cfg.sessions_dir, limit=limit)
        result = run_gate(
            candidate,
            settings=cfg,
            tasks=tasks,
            current=current,
            max_turns=max_turns,
            workers=workers,
            promote=promote,
            require_significant=require_significant,
        )
    except (GateError, EvalError, SuiteError, UnknownModelError) as exc:
        fail(str(exc))
    typer.echo(result.report.markdown())


def retrain(
    method: MethodOpt = "leti",
    base: BaseOpt = None,
    data: DataOpt = None,
    lora: LoraOpt = True,
    epochs: EpochsOpt = 1.0,
    lr: LrOpt = 2e-4,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchOpt = 4,
    grad_accum: AccumOpt = 1,
    max_len: MaxLenOpt = 1024,
    lora_r: RankOpt = 16,
    out: OutOpt = Path("runs"),
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    save_every: SaveOpt = 100,
    gradient_checkpointing: CheckpointingOpt = False,
    quant: QuantOpt = "Q4_K_M",
    lora_only: LoraOnlyOpt = False,
    gate_limit: Annotated[
        int | None, typer.Option("--gate-limit", min=1, help="First N MBPP validation tasks.")
    ] = None,
    max_turns: Annotated[int | None, typer.Option("--max-turns", min=1)] = None,
    workers: Annotated[int, typer.Option("--workers", min=1)] = 2,
    promote: Annotated[bool, typer.Option("--promote/--no-promote")] = True,
    skip_build: Annotated[
        bool, typer.Option("--skip-build", help="Train on the existing dataset as is.")
    ] = False,
) -> None:
    """Data build -> train -> export -> gate, with a before/after report (table and PNG)."""
    from evals.runner import EvalError
    from evals.suites import SuiteError
    from trainer.export.check import GenerationCheckError
    from trainer.export.converter import ConverterError
    from trainer.export.pipeline import ExportError
    from trainer.gate import GateError
    from trainer.retrain import retrain as run_retrain
    from trainer.train.data import DataError
    from trainer.train.modeling import BaseModelError

    cfg = settings()
    train_cfg = _train_config(locals())
    try:
        result = run_retrain(
            cfg,
            train_cfg,
            sessions=[cfg.sessions_dir],
            quant=quant,
            lora_only=lora_only,
            gate_limit=gate_limit,
            max_turns=max_turns,
            workers=workers,
            promote=promote,
            skip_build=skip_build,
        )
    except (
        DataError,
        BaseModelError,
        ExportError,
        ConverterError,
        GenerationCheckError,
        GateError,
        EvalError,
        SuiteError,
        ValueError,
    ) as exc:
        fail(str(exc))
    typer.echo(result.report_md.read_text(encoding="utf-8"))
    typer.echo(f"report: {result.report_md}\nplot:   {result.report_png}")
