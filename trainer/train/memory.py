"""Whether a training step fits in memory without activation checkpointing.

The 1.5B's SFT at the defaults (4 rows of up to 1,024 tokens, fp32 on a CPU) was killed
by the kernel at 24 GB RSS on a 23 GB machine, after 225 s of loading, with no message.
The estimate below decides the `--gradient-checkpointing` default for the methods that
do not need it anyway, from the model's shape and the memory there is, so that run
checkpoints and the 0.5B's (about 16 GB) keeps its speed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Of the memory available, the share a step may plan to use: the rest is the allocator's
# slack, the data loader and whatever else runs beside it.
HEADROOM = 0.8
GB = 1024**3


@dataclass(frozen=True)
class StepMemory:
    """Estimated peak bytes of one training step without activation checkpointing."""

    weights: int
    activations: int
    logits: int

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.logits


def step_memory(
    *, n_params: int, hidden: int, layers: int, vocab: int, rows: int, tokens: int, dtype_bytes: int
) -> StepMemory:
    """Weights, the activations kept for the backward pass, and the logits.

    Activations: 34 bytes per token per hidden unit per layer in 16-bit (Korthikanti et al.
    2022, "Reducing Activation Recomputation in Large Transformer Models", sec. 4.1, without
    the attention-score term, which torch's fused attention does not keep), scaled to the
    dtype. Logits: every position through the vocabulary in fp32, then its log-softmax and
    gradient: an upper bound, since the CPU head scores labelled positions only.
    """
    positions = rows * tokens
    return StepMemory(
        weights=n_params * dtype_bytes,
        activations=34 * positions * hidden * layers * dtype_bytes // 2,
        logits=3 * positions * vocab * 4,
    )


def available_memory() -> int | None:
    """Bytes free for a new allocation: the GPU's on CUDA, else the host's MemAvailable."""
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None  # not Linux: no estimate, no change


def needs_checkpointing(estimate: StepMemory, available: int | None) -> bool:
    """True when the step would take more than HEADROOM of what is available."""
    return available is not None and estimate.total > HEADROOM * available


def decide_checkpointing(
    model: Any, *, n_params: int, rows: int, tokens: int, sharers: int = 1, main: bool = True
) -> bool:
    """The `--gradient-checkpointing` default for `model` (loaded, `n_params` weights) at this
    batch shape, when `sharers` training processes share the memory available."""
    config = model.config.get_text_config()
    dtype_bytes = next(model.parameters()).element_size()
    estimate = step_memory(
        n_params=n_params,
        hidden=config.hidden_size,
        layers=config.num_hidden_layers,
        vocab=config.vocab_size,
        rows=rows,
        tokens=tokens,
        dtype_bytes=dtype_bytes,
    )
    free = available_memory()
    available = None if free is None else free // sharers
    on = needs_checkpointing(estimate, available)
    if on and main:
        print(
            f"activation checkpointing on: a step of {rows} x {tokens} tokens needs about "
            f"{estimate.total / GB:.1f} GB without it, {available / GB:.1f} GB is available "
            "(about 30% more time per step; --no-gradient-checkpointing to turn it off)",
            file=sys.stderr,
        )
    return on
