"""The run directory: `runs/<timestamp>-<method>/` and what goes in it.

config.json      the TrainConfig, the resolved base and library versions
data.json        the data manifest's sha256, the dataset file's sha256, counts
history.jsonl    one line per optimizer step (loss, lr, tokens, seconds, tokens/s, and
                 TRL's logged metrics: grad_norm, rewards/*, kl, ...)
metrics.json     the summary (first/final loss, tokens/s, peak GPU memory, ...)
loss.png         the loss curve
adapter/         the LoRA adapter (or model/ for --full), tokenizer/ beside it
base-config/     the base model's config.json (what a GGUF LoRA export needs)
checkpoints/checkpoint-N/  the Trainer's checkpoints (weights, optimizer, scheduler, RNG,
                 trainer_state.json), what `--resume` continues from
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from agent.errors import FixloopError

CONFIG = "config.json"
DATA = "data.json"
HISTORY = "history.jsonl"
METRICS = "metrics.json"
LOSS_PNG = "loss.png"
ADAPTER = "adapter"
FULL_MODEL = "model"
TOKENIZER = "tokenizer"
CHECKPOINTS = "checkpoints"
BASE_CONFIG = "base-config"


class RunDirError(FixloopError, ValueError):
    """A run directory that is missing or incomplete; the message says what to do."""


def new_run_dir(out_dir: Path, method: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = out_dir / f"{stamp}-{method}"
    n = 1
    while path.exists():
        n += 1
        path = out_dir / f"{stamp}-{method}-{n}"
    return path


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise RunDirError(f"{path} is missing: is {path.parent} a finished `fixloop train` run?")
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a per-step log (history, rollouts); none when it does not exist yet."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(run_dir / HISTORY)


def checkpoint_step(checkpoint: Path | None) -> int:
    """The optimizer step a Trainer checkpoint was saved at ("checkpoint-N"; none: 0)."""
    return int(checkpoint.name.split("-")[1]) if checkpoint is not None else 0


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete Trainer checkpoint (one with its trainer_state.json)."""
    ckpts = sorted(
        (
            p
            for p in (run_dir / CHECKPOINTS).glob("checkpoint-*")
            if p.name.split("-")[1].isdigit() and (p / "trainer_state.json").is_file()
        ),
        key=checkpoint_step,
    )
    return ckpts[-1] if ckpts else None


def keep_steps_until(path: Path, step: int) -> None:
    """Drop the JSON lines of steps after `step` from `path` (history.jsonl, an RLEF run's
    rollouts.jsonl): a run resumed from that step's checkpoint plays them again."""
    if not path.is_file():
        return
    lines = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    kept = [x for x in lines if json.loads(x)["step"] <= step]
    path.write_text("".join(x + "\n" for x in kept), encoding="utf-8")


def append_history(run_dir: Path, row: dict[str, Any]) -> None:
    with (run_dir / HISTORY).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    (run_dir / HISTORY).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def plot_loss(history: list[dict[str, Any]], out: Path, title: str) -> None:
    """Loss per optimizer step, with a moving average when there are enough points; for a
    preference run (DPO), a second panel with the chosen and rejected replies' log-likelihood,
    which shows whether the margin grew by raising the chosen or by sinking both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    losses = [h["loss"] for h in history]
    paired = bool(history) and all("logps/chosen" in h for h in history)
    fig, axes = plt.subplots(1, 2 if paired else 1, figsize=(12 if paired else 7, 4), dpi=100)
    ax = axes[0] if paired else axes
    ax.plot(steps, losses, lw=1, alpha=0.5 if len(steps) > 20 else 1.0, label="loss")
    window = max(1, len(steps) // 20)
    if window > 1:
        smooth = [
            sum(losses[max(0, i - window + 1) : i + 1]) / min(window, i + 1)
            for i in range(len(losses))
        ]
        ax.plot(steps, smooth, lw=2, label=f"moving average ({window})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if paired:
        right = axes[1]
        for key, label in (("logps/chosen", "chosen"), ("logps/rejected", "rejected")):
            right.plot(steps, [h.get(key) for h in history], marker=".", label=label)
        right.set_xlabel("optimizer step")
        right.set_ylabel("log-likelihood of the reply (batch mean)")
        right.set_title("preference pairs")
        right.grid(alpha=0.3)
        right.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
