"""The stages of `fixloop retrain`, each skipped when its record says it finished.

Each takes the retrain's state (`trainer.retrain.state`), runs or skips its stage, and
records what it left; see `trainer.retrain` for the order and the directory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.models import Registry
from trainer.export.pipeline import ExportResult, export_run
from trainer.gate import GateReport, gate_tasks, run_gate
from trainer.retrain.plans import GatePlan
from trainer.retrain.report import write_report
from trainer.retrain.state import (
    SEED_SESSIONS,
    TRAIN,
    RetrainError,
    RetrainState,
    say,
    settings_key,
)
from trainer.train import rundir
from trainer.train.config import TrainConfig
from trainer.train.data import manifest_info
from trainer.train.loop import TrainResult, run_training

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.events import Task
    from agent.preferences import Preference
    from trainer.gate import BackendFactory


def build_data(sessions: Sequence[Path], out: Path, *, progress: bool) -> dict[str, int]:
    """`fixloop data build` as a function: the rows written per format."""
    from trainer.data.build import BuildOptions
    from trainer.data.build import build as build_dataset

    result = build_dataset(BuildOptions(sessions=list(sessions), out=out, progress=progress))
    return result.rows


def training_rows(sessions: Sequence[Path], method: str) -> int:
    """The train-split rows of `method` a build of `sessions` gives (built in a temp dir)."""
    from trainer.data.build import BuildOptions
    from trainer.data.build import build as build_dataset

    if not sessions:
        return 0
    with tempfile.TemporaryDirectory(prefix="fixloop-rows-") as tmp:
        result = build_dataset(
            BuildOptions(sessions=list(sessions), out=Path(tmp), formats=(method,))
        )
    return int(result.manifest["formats"][method]["rows_by_split"]["train"])


def seed(
    state: RetrainState,
    settings: Settings,
    cfg: TrainConfig,
    sources: list[Path],
    *,
    min_rows: int,
    samples: int,
    limit: int | None,
    teacher: str | None = None,
    backend_for: BackendFactory | None,
    progress: bool,
) -> list[Path]:
    """The seeded sessions to build from too ([] when the user's sessions were enough)."""
    record = state.get("seed")
    if record is not None:
        state.skip("seed")
    elif min_rows <= 0:
        record = state.finish("seed", "off (--min-rows 0)", seeded=False)
    else:
        rows = training_rows(sources, cfg.method)
        where = ", ".join(map(str, sources)) or "no sessions yet"
        if rows >= min_rows:
            summary = f"not needed: {rows} {cfg.method} rows >= --min-rows {min_rows}"
            say(f"{where}: {summary}")
            record = state.finish("seed", summary, seeded=False, rows_before=rows)
        else:
            state.start("seed")
            say(f"{where}: {rows} {cfg.method} training rows (< --min-rows {min_rows})")
            policy = teacher or cfg.base
            record = _play_seed(state, settings, policy, samples, limit, backend_for, progress)
    return [Path(record["sessions"])] if record["seeded"] else []


def _play_seed(
    state: RetrainState,
    settings: Settings,
    model: str,
    samples: int,
    limit: int | None,
    backend_for: BackendFactory | None,
    progress: bool,
) -> dict[str, Any]:
    """`model` (the one being retrained, or a teacher) plays MBPP train tasks into the
    retrain's own sessions."""
    from trainer.data.seed import seed_tasks

    tasks = seed_tasks("mbpp", "train", limit=limit)
    say(
        f"seeding {len(tasks)} MBPP train tasks x {samples} with {model} into "
        f"{state.directory / SEED_SESSIONS}"
    )
    return play(
        state,
        "seed",
        settings,
        model,
        tasks,
        suite_name="mbpp-train",
        samples=samples,
        backend_for=backend_for,
        progress=progress,
    )


def play(
    state: RetrainState,
    stage: str,
    settings: Settings,
    model: str,
    tasks: Sequence[Task],
    *,
    suite_name: str,
    samples: int,
    max_turns: int | None = None,
    temperature: float | None = None,
    backend_for: BackendFactory | None,
    progress: bool,
) -> dict[str, Any]:
    """`model` plays `tasks` x `samples` into the retrain's own sessions (`trainer.data.seed`,
    resumable by its progress file in `seed/`), then `stage` is recorded as finished. The
    seed stage and the preference round (`trainer.retrain.preferences`) both play here."""
    from agent.session_log import ensure_sessions_dir
    from trainer.data.seed import MAX_TURNS, SEED_POLICY, seed_sessions

    out = ensure_sessions_dir(state.directory / SEED_SESSIONS)
    policy = {
        "model": model,
        "sessions_dir": out,
        "adapter": None,
        "base_url": None,
        "policy": SEED_POLICY,
    }
    result = seed_sessions(
        list(tasks),
        settings.model_copy(update=policy),
        out_dir=state.directory / "seed",
        suite_name=suite_name,
        samples=samples,
        max_turns=max_turns or MAX_TURNS,
        temperature=temperature,
        backend=backend_for(model) if backend_for else None,
        progress=progress,
    )
    summary = f"{result.episodes} episodes into {out}, {result.passed.count:.0f} passed"
    return state.finish(
        stage,
        summary,
        seeded=True,
        sessions=str(out),
        model=model,
        tasks=len(tasks),
        samples=samples,
        episodes=result.episodes,
    )


def build(
    state: RetrainState, cfg: TrainConfig, sources: list[Path], *, skip: bool, progress: bool
) -> None:
    """Build the dataset (or take `cfg.data_dir` as is) and record its manifest hash."""
    if state.get("build") is not None:
        state.skip("build")
        return
    state.start("build")
    if skip:
        summary = f"skipped (--skip-build): training on {cfg.data_dir} as is"
        rows: dict[str, int] = {}
    else:
        rows = build_data(sources, cfg.data_dir, progress=progress)
        summary = f"{cfg.data_dir}, {rows.get(cfg.method, 0)} {cfg.method} rows"
    _, sha = manifest_info(cfg.data_dir)
    state.finish("build", summary, data_dir=str(cfg.data_dir), manifest_sha256=sha, rows=rows)


def check_data(state: RetrainState, cfg: TrainConfig) -> None:
    """The dataset is still the one the build stage recorded."""
    record = state.get("build")
    if cfg.method == "rlef" or record is None:
        return
    _, sha = manifest_info(cfg.data_dir)
    if sha != record["manifest_sha256"]:
        raise RetrainError(
            f"{cfg.data_dir} changed since this retrain's build stage (manifest sha256 "
            f"{sha[:12] or 'missing'}, was {record['manifest_sha256'][:12]}); rerun with "
            "--fresh to build and train again"
        )


def _interrupted_run(parent: Path) -> Path | None:
    """The newest training run under `parent` that wrote its config (so it can resume)."""
    runs = sorted(p.parent for p in parent.glob(f"*/{rundir.CONFIG}"))
    return runs[-1] if runs else None


def train(
    state: RetrainState, settings: Settings, cfg: TrainConfig, *, progress: bool
) -> TrainResult:
    """Train into `train/`, or continue the run an interruption left there."""
    record = state.get("train")
    if record is not None:
        run_dir = Path(state.skip("train")["run_dir"])
        return TrainResult(run_dir, rundir.read_json(run_dir / rundir.METRICS))
    check_data(state, cfg)
    state.start("train")
    common: dict[str, Any] = {
        "cache_dir": settings.cache_dir,
        "registry_dir": settings.data_dir,
        "progress": progress,
    }
    partial = _interrupted_run(state.directory / TRAIN)
    if partial is not None and (partial / rundir.METRICS).is_file():
        say(f"the run {partial} had finished before the interruption")
        result = TrainResult(partial, rundir.read_json(partial / rundir.METRICS))
    elif partial is not None:
        ckpt = rundir.latest_checkpoint(partial)
        say(f"continuing the interrupted run {partial} from {ckpt.name if ckpt else 'step 0'}")
        result = run_training(None, resume=partial, **common)
    else:
        result = run_training(cfg.model_copy(update={"out_dir": state.directory / TRAIN}), **common)
    state.finish("train", str(result.run_dir), run_dir=str(result.run_dir))
    return result


def export(
    state: RetrainState,
    settings: Settings,
    run_dir: Path,
    *,
    quant: str,
    lora_only: bool,
    progress: bool,
) -> ExportResult:
    """Export and register the run; an export that registered before an interruption is kept."""
    registry = Registry(settings.data_dir)
    record = state.get("export")
    if record is not None and record["name"] in registry.all():
        state.skip("export")
    else:
        if record is not None:
            say(f"{record['name']} is no longer registered; exporting again")
        state.start("export")
        done = run_dir / "export.json"  # written by export_run once it registered the model
        record = rundir.read_json(done) if done.is_file() else None
        if record is not None and record["name"] in registry.all():
            say(f"{record['name']} was exported and registered before the interruption")
        else:
            result = export_run(
                run_dir,
                cache_dir=settings.cache_dir,
                data_dir=settings.data_dir,
                quant=quant,
                lora_only=lora_only,
                progress=progress,
            )
            state.finish(
                "export",
                f"{result.name}: {result.gguf}",
                name=result.name,
                gguf=str(result.gguf),
                adapter=str(result.adapter) if result.adapter else None,
            )
            return result
        state.finish(
            "export",
            f"{record['name']}: {record['gguf']}",
            name=record["name"],
            gguf=record["gguf"],
            adapter=record["adapter"],
        )
    adapter = Path(record["adapter"]) if record["adapter"] else None
    return ExportResult(registry.get(record["name"]), Path(record["gguf"]), adapter, None)


def gate_baseline(settings: Settings, base: str) -> str | None:
    """The registered model a retrained candidate is compared with: its base, when the base
    is a registered model (else the model in use)."""
    return base if base in Registry(settings.data_dir).all() else None


def gate(
    state: RetrainState,
    settings: Settings,
    cfg: TrainConfig,
    train: TrainResult,
    exported: ExportResult,
    plan: GatePlan,
    *,
    backend_for: BackendFactory | None,
    progress: bool,
    notes: Sequence[str] = (),
    preferences: Sequence[Preference] = (),
) -> tuple[GateReport, Path, Path]:
    """Gate the exported model (again if the gate's settings changed) and write the report
    (`preferences`: a preference round's, whose compliance the gate measures too)."""
    tasks = plan.tasks
    if tasks is None:
        tasks = gate_tasks(
            sessions_dir=settings.sessions_dir, limit=plan.limit, humaneval=plan.humaneval
        )
    gate_settings = {
        "candidate": exported.name,
        "tasks": [t.task_id for t in tasks],
        "max_turns": plan.max_turns or settings.max_turns,
        "promote": plan.promote,
        "require_significant": plan.require_significant,
    }
    if preferences:
        gate_settings["preferences"] = [f"{p.id} v{p.current.version}" for p in preferences]
    key = settings_key(gate_settings)
    record = state.get("gate")
    if record is not None and record["key"] == key:
        state.skip("gate")
        report = GateReport.model_validate_json(Path(record["gate_json"]).read_text("utf-8"))
        return report, Path(record["report_md"]), Path(record["report_png"])
    if record is not None:
        say("the gate's settings changed since it ran: gating again")
    state.start("gate")
    out = state.directory / f"gate-{key}"
    gate = run_gate(
        exported.name,
        settings=settings,
        tasks=tasks,
        # Against the model it was trained from (the candidate may be current by now).
        current=record["current"] if record else gate_baseline(settings, cfg.base),
        max_turns=plan.max_turns,
        out_dir=out,
        workers=plan.workers,
        promote=plan.promote,
        require_significant=plan.require_significant,
        backend_for=backend_for,
        progress=progress,
        preferences=preferences,
        reuse=plan.reuse,
    )
    md, png = write_report(state.directory, cfg, train, exported, gate, notes)
    verdict = "promoted" if gate.report.promoted else "not promoted"
    state.finish(
        "gate",
        f"{exported.name} {verdict}; report {md}",
        key=key,
        current=gate.report.current,
        gate_json=str(out / "gate.json"),
        report_md=str(md),
        report_png=str(png),
        promoted=gate.report.promoted,
    )
    return gate.report, md, png
