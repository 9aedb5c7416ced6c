"""The retrain report: `retrain.md` (the run, the export, the gate's before/after table)
and `retrain.png` (both models' rates with 95% intervals, and the training loss curve)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evals.metrics import metric_preference
from evals.results import RateOut
from trainer.export.pipeline import ExportResult
from trainer.gate import GateResult
from trainer.train import rundir
from trainer.train.config import TrainConfig
from trainer.train.loop import TrainResult

EMPTY = RateOut(count=0, n=0, rate=0.0, ci95=(0.0, 0.0), ci_method="none")


def plot_report(gate: GateResult, history: list[dict[str, Any]], out: Path) -> Path:
    """Two panels: before/after rates with 95% intervals, and the training loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = gate.report
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    width = 0.38
    names = [m.metric for m in report.metrics]
    prefs = [p for p in map(metric_preference, names) if p is not None]
    cur_rates = [gate.current.pass_at_1, gate.current.passed]
    cand_rates = [gate.candidate.pass_at_1, gate.candidate.passed]
    for pref in prefs:  # a rate a model has no check for: an empty bar
        cur_rates.append(gate.current.compliance.get(pref, EMPTY))
        cand_rates.append(gate.candidate.compliance.get(pref, EMPTY))
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
    ax.set_xticks(range(len(names)), [n if len(n) < 28 else n[:26] + "…" for n in names])
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
