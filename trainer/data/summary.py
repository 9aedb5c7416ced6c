"""What a build produced, at a glance: a text table and a PNG bar chart.

Three views: rows per format (train / validation), the pass/fail balance of
the labelled formats (LeTI reward, KTO label, episode outcome), and feedback:
the kinds the model was sent in the sessions (execution, format, duplicate, user
text, edit) and, for LeTI's failed attempts, what their feedback span reports
(tests failed, an error, a timeout). A one-turn seed run sends no feedback to the
model, yet every failed row carries a traceback; the second count shows that.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from trainer.data.formats import FORMATS


@dataclass
class Summary:
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # format -> split -> n
    balance: dict[str, dict[str, int]] = field(default_factory=dict)  # format -> good/bad -> n
    feedback_kinds: dict[str, int] = field(default_factory=dict)
    leti_feedback: dict[str, int] = field(default_factory=dict)  # failed rows by status
    sessions: int = 0
    problems: int = 0
    refused: int = 0


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def summarize(out: Path) -> Summary:
    """Summarize the datasets in a build directory (reads manifest.json and the JSONL files)."""
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"no manifest.json in {out}: run `fixloop data build` first")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    summary = Summary(
        sessions=len(manifest.get("sessions", [])),
        problems=len(manifest.get("problems", [])),
        refused=len(manifest.get("refused", [])),
    )
    for fmt in FORMATS:
        info = manifest["formats"].get(fmt)
        if info is not None:
            summary.rows[fmt] = dict(info["rows_by_split"])
    leti = _read_jsonl(out / "leti.jsonl")
    kto = _read_jsonl(out / "kto.jsonl")
    episodes = _read_jsonl(out / "episodes.jsonl")
    if "leti" in summary.rows:
        summary.balance["leti"] = _good_bad(r["passed"] for r in leti)
    if "kto" in summary.rows:
        summary.balance["kto"] = _good_bad(r["label"] for r in kto)
    if "episodes" in summary.rows:  # the held-out reward where there is one, else the tests
        summary.balance["episodes"] = _good_bad(
            r["reward"] > 0 if r["reward"] is not None else r["passed"] for r in episodes
        )
    kinds: Counter[str] = Counter()
    for row in episodes:
        kinds.update(row["feedback_kinds"])
    summary.feedback_kinds = dict(sorted(kinds.items()))
    statuses = Counter(str(r.get("status") or "failed") for r in leti if not r["passed"])
    summary.leti_feedback = dict(sorted(statuses.items()))
    return summary


def _good_bad(flags) -> dict[str, int]:
    values = list(flags)
    good = sum(bool(v) for v in values)
    return {"pass": good, "fail": len(values) - good}


def table(summary: Summary) -> str:
    """A plain-text table (fits a terminal, pastes into Markdown as a code block)."""
    lines = [f"{'format':<10} {'train':>7} {'valid':>7} {'total':>7}   pass / fail"]
    for fmt, splits in summary.rows.items():
        train, valid = splits.get("train", 0), splits.get("validation", 0)
        bal = summary.balance.get(fmt)
        balance = f"{bal['pass']:>5} / {bal['fail']}" if bal else ""
        lines.append(f"{fmt:<10} {train:>7} {valid:>7} {train + valid:>7}   {balance}")
    kinds = ", ".join(f"{k} {n}" for k, n in summary.feedback_kinds.items()) or "none"
    lines.append(f"feedback kinds (sessions): {kinds}")
    if summary.leti_feedback:
        spans = ", ".join(f"{k} {n}" for k, n in summary.leti_feedback.items())
        lines.append(f"LeTI feedback spans (failed attempts): {spans}")
    lines.append(
        f"sessions used: {summary.sessions}, refused (eval tasks): {summary.refused}, "
        f"log problems: {summary.problems}"
    )
    return "\n".join(lines)


def chart(summary: Summary, path: Path) -> Path:
    """A PNG with three bar charts: rows per format, pass/fail balance, feedback kinds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    formats = list(summary.rows)
    train = [summary.rows[f].get("train", 0) for f in formats]
    valid = [summary.rows[f].get("validation", 0) for f in formats]
    axes[0].bar(formats, train, label="train", color="#4c72b0")
    axes[0].bar(formats, valid, bottom=train, label="validation", color="#dd8452")
    axes[0].set_title("rows per format")
    axes[0].legend()

    labelled = list(summary.balance)
    passed = [summary.balance[f]["pass"] for f in labelled]
    failed = [summary.balance[f]["fail"] for f in labelled]
    x = range(len(labelled))
    axes[1].bar([i - 0.2 for i in x], passed, width=0.4, label="pass", color="#55a868")
    axes[1].bar([i + 0.2 for i in x], failed, width=0.4, label="fail", color="#c44e52")
    axes[1].set_xticks(list(x), labelled)
    axes[1].set_title("pass / fail balance")
    axes[1].legend()

    sent = [f"sent: {k}" for k in summary.feedback_kinds]
    spans = [f"LeTI: {k}" for k in summary.leti_feedback]
    if sent or spans:
        axes[2].bar(sent, list(summary.feedback_kinds.values()), color="#8172b3")
        axes[2].bar(spans, list(summary.leti_feedback.values()), color="#937860")
    else:
        axes[2].bar(["none"], [0], color="#8172b3")
    axes[2].set_title("feedback: sent to the model / in LeTI rows")

    for axis in axes:
        axis.tick_params(axis="x", rotation=30)
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
