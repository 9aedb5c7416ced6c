"""What one training run is: method, base model, data, and hyperparameters.

The config is written to the run directory as `config.json` and read back on
`--resume`, so a resumed run continues with exactly the settings it started with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

Method = Literal["sft", "leti", "ilf", "dpo", "kto"]
METHODS: tuple[Method, ...] = ("sft", "leti", "ilf", "dpo", "kto")

# The dataset file `fixloop data build` writes for each method.
DATA_FILES: dict[Method, str] = {
    "sft": "sft.jsonl",
    "leti": "leti.jsonl",
    "ilf": "ilf.jsonl",
    "dpo": "dpo.jsonl",
    "kto": "kto.jsonl",
}

# LeTI's reward and feedback tokens (Wang et al., 2023), added to the vocabulary.
LETI_TOKENS: tuple[str, ...] = ("<|good|>", "<|bad|>", "<|lang_feedback|>", "<|/lang_feedback|>")


class TrainConfig(BaseModel):
    """Every knob of a run. Defaults suit LoRA on a 1.5B model on one GPU."""

    method: Method = "leti"
    base: str = Field(
        "qwen2.5-coder-1.5b",
        description="registered model name, a .gguf file, or a Hugging Face model directory",
    )
    data_dir: Path = Field(description="directory written by `fixloop data build`")
    out_dir: Path = Field(Path("runs"), description="parent of the run directory")
    lora: bool = True
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    lr: float = Field(2e-4, gt=0)
    batch_size: int = Field(4, ge=1, description="sequences (or pairs) per device per step")
    grad_accum: int = Field(1, ge=1)
    max_len: int = Field(1024, ge=16, description="tokens per sequence; longer ones are cut")
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0)
    beta: float = Field(0.1, gt=0, description="DPO/KTO temperature on the log-ratio")
    kto_desirable_weight: float = Field(1.0, gt=0)
    kto_undesirable_weight: float = Field(1.0, gt=0)
    seed: int = 0
    save_every: int = Field(100, ge=1, description="checkpoint every N optimizer steps")
    keep_checkpoints: int = Field(2, ge=1)
    bf16: bool | None = Field(None, description="None: bf16 when CUDA supports it")
    gradient_checkpointing: bool = False
    limit: int | None = Field(None, ge=1, description="use only the first N examples")
    split: str | None = Field("train", description="rows of this split (None: all rows)")

    @property
    def data_file(self) -> Path:
        return self.data_dir / DATA_FILES[self.method]

    @property
    def needs_leti_tokens(self) -> bool:
        return self.method == "leti"
