"""`fixloop train`, `fixloop export`, `fixloop gate`, `fixloop retrain`: the offline loop.

torch, transformers, peft and llama_cpp are imported only when a command runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from fixloop.cli.common import fail, settings

QuantOpt = Annotated[str, typer.Option("--quant", help="Q4_K_M (default) or Q8_0.")]
LoraOnlyOpt = Annotated[
    bool, typer.Option("--lora-only", help="Export the adapter alone as a GGUF LoRA.")
]


def training_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give `command` every TrainConfig option; it receives them as a TrainConfig (`train_cfg`).

    The training options are declared once, as TrainConfig fields with a `flag`
    (trainer/train/config.py); `train` and `retrain` both take exactly those.
    """
    from trainer.train.config import cli_options

    options = cli_options()
    params = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=default,
            annotation=Annotated[kind, typer.Option(flag, help=help)],
        )
        for name, flag, help, kind, default in options
    ]
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.name != "train_cfg"
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        opts = {name: kwargs.pop(name) for name, *_ in options}
        return command(train_cfg=_train_config(opts), **kwargs)

    wrapper.__signature__ = inspect.Signature(params + own)  # type: ignore[attr-defined]
    return wrapper


def _train_config(opts: dict[str, Any]) -> Any:
    """A TrainConfig from the command line's training options (the settings fill --base/--data)."""
    from pydantic import ValidationError

    from trainer.train.config import METHODS, TrainConfig, cli_options

    if opts["method"] not in METHODS:
        fail(f"--method {opts['method']!r} is not one of {', '.join(METHODS)}.")
    cfg = settings()
    values = {
        **opts,
        "base": opts["base"] or cfg.model,
        "data_dir": opts["data_dir"] or cfg.data_dir / "datasets",
    }
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        flags = {name: flag.split("/")[0] for name, flag, *_ in cli_options()}
        where = flags.get(str(err["loc"][0]), str(err["loc"][0])) if err["loc"] else ""
        fail(f"invalid training option {where}: {err['msg']}")


@training_options
def train(
    train_cfg: Any = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this run dir from its checkpoint.")
    ] = None,
) -> None:
    """Fine-tune on a dataset from `fixloop data build` (runs under `accelerate launch` too)."""
    from trainer.train.data import DataError
    from trainer.train.loop import describe_loss, run_training
    from trainer.train.modeling import BaseModelError
    from trainer.train.rundir import RunDirError

    cfg = settings()
    try:
        result = run_training(
            None if resume is not None else train_cfg,
            cache_dir=cfg.cache_dir,
            registry_dir=cfg.data_dir,
            resume=resume,
            max_steps=train_cfg.max_steps if resume is not None else None,
            progress=True,
        )
    except (DataError, BaseModelError, RunDirError, ValueError) as exc:
        fail(str(exc))
    if not result.is_main:
        return
    m = result.metrics
    if m.get("method") == "rlef":
        typer.echo(
            f"run: {result.run_dir}\n"
            f"steps {m['steps']}  mean episode reward {m['first_reward']} -> "
            f"{m['final_reward']}  ({m['tasks']} tasks, {m['rewarded_on_public_tests']} "
            f"rewarded on their public tests)  {m['train_seconds']} s\n"
            f"reward curve: {result.run_dir / 'reward.png'}\nnext: fixloop export {result.run_dir}"
        )
        return
    typer.echo(
        f"run: {result.run_dir}\n"
        f"steps {m['steps']}  {describe_loss(m)}  "
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
        int | None, typer.Option("--limit", min=1, help="First N tasks of each suite.")
    ] = None,
    humaneval: Annotated[
        bool,
        typer.Option(
            "--humaneval",
            help="Add HumanEval (164 tasks); each suite must then not get worse on its own.",
        ),
    ] = False,
    max_turns: Annotated[int | None, typer.Option("--max-turns", min=1)] = None,
    workers: Annotated[int, typer.Option("--workers", min=1)] = 2,
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="Switch if it passes.")
    ] = True,
    require_significant: Annotated[
        bool, typer.Option("--require-significant", help="Need a gain beyond noise.")
    ] = False,
    reuse: Annotated[
        bool,
        typer.Option(
            "--reuse/--no-reuse",
            help="Read back a model's episodes from an earlier gate with the same weights, "
            "settings and code instead of running them again.",
        ),
    ] = True,
) -> None:
    """Evaluate candidate vs current on held-out tasks; promote only if not worse."""
    from agent.models.registry import UnknownModelError
    from evals.errors import EvalError
    from evals.suites import SuiteError
    from trainer.gate import GateError, gate_tasks, run_gate

    cfg = settings()
    try:
        tasks = gate_tasks(sessions_dir=cfg.sessions_dir, limit=limit, humaneval=humaneval)
        result = run_gate(
            candidate,
            settings=cfg,
            tasks=tasks,
            current=current,
            max_turns=max_turns,
            workers=workers,
            promote=promote,
            require_significant=require_significant,
            reuse=reuse,
        )
    except (GateError, EvalError, SuiteError, UnknownModelError) as exc:
        fail(str(exc))
    typer.echo(result.report.markdown())


@training_options
def retrain(
    train_cfg: Any = None,
    quant: QuantOpt = "Q4_K_M",
    lora_only: LoraOnlyOpt = False,
    gate_limit: Annotated[
        int | None, typer.Option("--gate-limit", min=1, help="Gate: first N tasks of each suite.")
    ] = None,
    gate_humaneval: Annotated[
        bool,
        typer.Option(
            "--gate-humaneval",
            help="Gate on HumanEval too; each suite must then not get worse on its own.",
        ),
    ] = False,
    max_turns: Annotated[int | None, typer.Option("--max-turns", min=1)] = None,
    workers: Annotated[int, typer.Option("--workers", min=1)] = 2,
    promote: Annotated[bool, typer.Option("--promote/--no-promote")] = True,
    reuse: Annotated[
        bool,
        typer.Option(
            "--reuse/--no-reuse",
            help="Read back a model's episodes from an earlier gate with the same weights, "
            "settings and code instead of running them again.",
        ),
    ] = True,
    skip_build: Annotated[
        bool, typer.Option("--skip-build", help="Train on the existing dataset as is.")
    ] = False,
    min_rows: Annotated[
        int,
        typer.Option(
            "--min-rows",
            min=0,
            help="Seed first when the sessions give fewer train rows of the method (0: never).",
        ),
    ] = 100,
    seed_samples: Annotated[
        int | None,
        typer.Option(
            "--seed-samples",
            min=1,
            help="Seed: episodes per task (default 1; the --preferences round: 4, at T 0.8).",
        ),
    ] = None,
    seed_limit: Annotated[
        int | None,
        typer.Option(
            "--seed-limit", min=1, help="Seed: first N tasks (MBPP train, or --pref-tasks)."
        ),
    ] = None,
    teacher: Annotated[
        str | None,
        typer.Option(
            "--teacher",
            help="Seed with this model instead (strong-to-weak: e.g. the 1.5B's passing "
            "attempts train the 0.5B).",
        ),
    ] = None,
    pref_tasks: Annotated[
        str,
        typer.Option(
            "--pref-tasks",
            help="The --preferences round's tasks: mbpp (MBPP train) or sessions (your own "
            "logged tasks).",
        ),
    ] = "mbpp",
    min_pairs: Annotated[
        int,
        typer.Option(
            "--min-pairs", min=1, help="The --preferences round: fewest pairs to train on."
        ),
    ] = 8,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Start this retrain over (its seeded sessions are kept)."),
    ] = False,
) -> None:
    """Seed (too few sessions) -> data build -> train -> export -> gate, with a before/after
    report (table and PNG). Interrupted? The same command resumes at the unfinished stage.

    `--method dpo --preferences` is the online round for your standing preferences (fixloop
    prefs): the current model samples K attempts per task, checked against the tests and
    your active preferences; pairs (both pass, one follows a preference, one not) train DPO."""
    from evals.errors import EvalError
    from evals.suites import SuiteError
    from trainer.export.check import GenerationCheckError
    from trainer.export.converter import ConverterError
    from trainer.export.pipeline import ExportError
    from trainer.gate import GateError
    from trainer.retrain import GatePlan, SeedPlan
    from trainer.retrain import retrain as run_retrain
    from trainer.train.data import DataError
    from trainer.train.modeling import BaseModelError

    cfg = settings()
    try:
        result = run_retrain(
            cfg,
            train_cfg,
            sessions=[cfg.sessions_dir],
            seed=SeedPlan(
                min_rows=min_rows,
                samples=seed_samples,
                limit=seed_limit,
                teacher=teacher,
                pref_tasks=pref_tasks,
                min_pairs=min_pairs,
            ),
            gate=GatePlan(
                limit=gate_limit,
                humaneval=gate_humaneval,
                max_turns=max_turns,
                workers=workers,
                promote=promote,
                reuse=reuse,
            ),
            quant=quant,
            lora_only=lora_only,
            skip_build=skip_build,
            fresh=fresh,
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
    typer.echo(
        f"report: {result.report_md}\nplot:   {result.report_png}\nstate:  {result.directory}"
    )
