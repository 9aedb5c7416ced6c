"""The retrain report: `retrain.md` (the run, the export, the gate's before/after table)
and `retrain.png` (both models' rates with 95% intervals, and the training loss curve)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainer.export.pipeline import ExportResult
from trainer.gate import GateResult
from trainer.train import rundir
from trainer.train.config import TrainConfig
from trainer.train.loop import TrainResult, describe_loss


def plot_report(gate: GateResult, history: list[dict[str, Any]], out: Path) -> Path:
    """Two panels: before/after rates with 95% intervals, and the training loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = gate.report
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11 + 0.6 * len(report.metrics), 4), dpi=100)
    width = 0.38
    names = [m.metric for m in report.metrics]
    for offset, label, rates in (
        (
            -width / 2,
            f"current: {report.current}",
            [(m.current_rate, m.current_ci95) for m in report.metrics],
        ),
        (
            width / 2,
            f"candidate: {report.candidate}",
            [(m.candidate_rate, m.candidate_ci95) for m in report.metrics],
        ),
    ):
        xs = [i + offset for i in range(len(names))]
        values = [100 * rate for rate, _ in rates]
        errs = [
            [100 * max(0.0, rate - lo) for rate, (lo, _) in rates],
            [100 * max(0.0, hi - rate) for rate, (_, hi) in rates],
        ]
        ax.bar(xs, values, width, yerr=errs, capsize=4, label=label)
    ax.set_xticks(range(len(names)), [n if len(n) < 28 else n[:26] + "…" for n in names])
    ax.set_ylabel(f"% of held-out tasks ({report.tasks} in all; 95% CI)")
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
    cfg: TrainConfig,
    train: TrainResult,
    export: ExportResult,
    gate: GateResult,
    notes: Sequence[str] = (),
) -> str:
    """The report; `notes` are more lines about the data (the preference round's pairs)."""
    m = train.metrics
    lines = [
        f"# Retrain: {export.name}",
        "",
        f"- data: {cfg.data_dir} ({m['examples']} {cfg.method} examples)",
        *(f"- {note}" for note in notes),
        f"- training: {m['steps']} steps, {describe_loss(m)}, "
        f"{m['tokens_per_s']} tokens/s"
        + (f", peak GPU memory {m['peak_gpu_mem_gb']} GiB" if "peak_gpu_mem_gb" in m else ""),
        f"- validation loss: {m.get('val_loss_before')} -> {m.get('val_loss_after')} "
        f"({m.get('val_examples', 0)} rows)",
        f"- export: {export.gguf}" + (f" + adapter {export.adapter}" if export.adapter else ""),
        "",
        gate.report.markdown().split("\n", 2)[2],
    ]
    return "\n".join(lines)


def write_report(
    directory: Path,
    cfg: TrainConfig,
    train: TrainResult,
    export: ExportResult,
    gate: GateResult,
    notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """retrain.md and retrain.png in `directory`."""
    md = directory / "retrain.md"
    md.write_text(report_markdown(cfg, train, export, gate, notes), encoding="utf-8")
    png = plot_report(gate, rundir.read_history(train.run_dir), directory / "retrain.png")
    return md, png
