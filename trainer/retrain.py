"""`fixloop retrain`: data build -> train -> export -> gate, ending in a before/after report.

The report (`retrain.md` and `retrain.png` in the run directory) shows the current and the
candidate model on the gate's held-out tasks, with 95% intervals, the training loss curve,
and the gate's decision and reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.export.pipeline import ExportResult, export_run
from trainer.gate import GateResult, gate_tasks, run_gate
from trainer.train import rundir
from trainer.train.config import TrainConfig
from trainer.train.loop import TrainResult, run_training

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.events import Task
    from trainer.gate import BackendFactory


@dataclass(frozen=True)
class RetrainResult:
    data_dir: Path
    train: TrainResult
    export: ExportResult
    gate: GateResult
    report_md: Path
    report_png: Path


def build_data(sessions: Sequence[Path], out: Path, *, progress: bool) -> dict[str, int]:
    """`fixloop data build` as a function: the rows written per format."""
    from trainer.data.build import BuildOptions, build

    result = build(BuildOptions(sessions=list(sessions), out=out, progress=progress))
    return result.rows


def plot_report(gate: GateResult, history: list[dict[str, Any]], out: Path) -> Path:
    """Two panels: before/after rates with 95% intervals, and the training loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = gate.report
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    width = 0.38
    names = [m.metric for m in report.metrics]
    cur_rates = [gate.current.pass_at_1, gate.current.passed]
    cand_rates = [gate.candidate.pass_at_1, gate.candidate.passed]
    for offset, label, rates in (
        (-width / 2, f"current: {report.current}", cur_rates),
        (width / 2, f"candidate: {report.candidate}", cand_rates),
    ):
        xs = [i + offset for i in range(len(names))]
        values = [100 * r.rate for r in rates]
        errs = [
            [100 * (r.rate - r.ci95[0]) for r in rates],
            [100 * (r.ci95[1] - r.rate) for r in rates],
        ]
        ax.bar(xs, values, width, yerr=errs, capsize=4, label=label)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(f"% of {report.tasks} held-out tasks (95% CI)")
    ax.set_ylim(0, 100)
    ax.set_title("promoted" if report.promoted else "not promoted")
    ax.legend(fontsize=8)
    if history:
        ax2.plot([h["step"] for h in history], [h["loss"] for h in history])
    ax2.set_xlabel("optimizer step")
    ax2.set_ylabel("training loss")
    ax2.set_title("training")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def report_markdown(
    cfg: TrainConfig, train: TrainResult, export: ExportResult, gate: GateResult
) -> str:
    m = train.metrics
    lines = [
        f"# Retrain: {export.name}",
        "",
        f"- data: {cfg.data_dir} ({m['examples']} {cfg.method} examples)",
        f"- training: {m['steps']} steps, loss {m['first_loss']:.4f} -> {m['final_loss']:.4f}, "
        f"{m['tokens_per_s']} tokens/s"
        + (f", peak GPU memory {m['peak_gpu_mem_gb']} GiB" if "peak_gpu_mem_gb" in m else ""),
        f"- validation loss: {m.get('val_loss_before')} -> {m.get('val_loss_after')} "
        f"({m.get('val_examples', 0)} rows)",
        f"- export: {export.gguf}" + (f" + adapter {export.adapter}" if export.adapter else ""),
        "",
        gate.report.markdown().split("\n", 2)[2],
    ]
    return "\n".join(lines)


def retrain(
    settings: Settings,
    cfg: TrainConfig,
    *,
    sessions: Sequence[Path],
    quant: str = "Q4_K_M",
    lora_only: bool = False,
    gate_limit: int | None = None,
    tasks: Sequence[Task] | None = None,
    max_turns: int | None = None,
    workers: int = 1,
    promote: bool = True,
    require_significant: bool = False,
    skip_build: bool = False,
    backend_for: BackendFactory | None = None,
    progress: bool = True,
) -> RetrainResult:
    """The whole loop; each stage's output stays on disk for inspection or a rerun."""
    if not skip_build:
        build_data(sessions, cfg.data_dir, progress=progress)
    train = run_training(
        cfg, cache_dir=settings.cache_dir, registry_dir=settings.data_dir, progress=progress
    )
    exported = export_run(
        train.run_dir,
        cache_dir=settings.cache_dir,
        data_dir=settings.data_dir,
        quant=quant,
        lora_only=lora_only,
        progress=progress,
    )
    if tasks is None:
        tasks = gate_tasks(sessions_dir=settings.sessions_dir, limit=gate_limit)
    gate = run_gate(
        exported.name,
        settings=settings,
        tasks=tasks,
        max_turns=max_turns,
        out_dir=train.run_dir / "gate",
        workers=workers,
        promote=promote,
        require_significant=require_significant,
        backend_for=backend_for,
        progress=progress,
    )
    md = train.run_dir / "retrain.md"
    md.write_text(report_markdown(cfg, train, exported, gate), encoding="utf-8")
    png = plot_report(gate, rundir.read_history(train.run_dir), train.run_dir / "retrain.png")
    return RetrainResult(cfg.data_dir, train, exported, gate, md, png)
