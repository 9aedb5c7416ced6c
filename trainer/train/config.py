"""What one training run is: method, base model, data, and hyperparameters.

`TrainConfig` is declared once and is also the command line: every field with a `flag`
is an option of both `fixloop train` and `fixloop retrain` (see `cli_options`). The config
is written to the run directory as `config.json` and read back on `--resume`, so a resumed
run continues with exactly the settings it started with.

The defaults are fixloop's, set explicitly on TRL's configs (TRL's differ: learning rate
1e-6 for DPO/KTO, gradient checkpointing on, bf16 on).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, model_validator

Method = Literal["sft", "leti", "ilf", "dpo", "kto", "rlef"]
METHODS: tuple[Method, ...] = get_args(Method)

# Methods whose rows hold two sequences (chosen and rejected; KTO's completion and its KL
# partner), each scored by the policy and by the reference: their activations are the
# largest, so they checkpoint by default.
PAIRED_METHODS: tuple[Method, ...] = ("dpo", "kto")
SEQUENCE_METHODS: tuple[Method, ...] = ("sft", "leti", "ilf")  # one sequence a row: TRL's SFT

# The dataset file `fixloop data build` writes for each offline method (RLEF plays tasks).
DATA_FILES: dict[Method, str] = {m: f"{m}.jsonl" for m in METHODS if m != "rlef"}
REPAIR_FILE = "repair.jsonl"  # repair trajectories, prompt/completion; SFT --with-repair
PREF_DPO_FILE = "pref_dpo.jsonl"  # preference pairs (issue 16); DPO --preferences


def dataset_file(method: Method, *, preferences: bool = False) -> str:
    """The dataset file a method trains on (DPO --preferences: the preference pairs)."""
    if method == "rlef":
        raise ValueError("RLEF plays tasks (--suite), it reads no dataset file")
    return PREF_DPO_FILE if preferences else DATA_FILES[method]


# LeTI's reward and feedback tokens (Wang et al., 2023), added to the vocabulary.
LETI_TOKENS: tuple[str, ...] = ("<|good|>", "<|bad|>", "<|lang_feedback|>", "<|/lang_feedback|>")


def _opt(default: Any, flag: str, help: str, **constraints: Any) -> Any:
    """A field that is also a command-line option (`flag`, e.g. "--lr" or "--lora/--full")."""
    return Field(default, description=help, json_schema_extra={"flag": flag}, **constraints)


class TrainConfig(BaseModel):
    """Every knob of a run. Defaults suit LoRA on a 1.5B model on one GPU."""

    # SFT: no recipe measured on the 0.5B beat its base (docs/BENCHMARKS.md); SFT on the
    # model's own passing samples tied it and is the cheapest: minutes of training on 2 cores
    # where LeTI's rows (every attempt with its feedback) take hours.
    method: Method = _opt(
        "sft",
        "--method",
        "sft | leti | ilf | dpo | kto (the dataset it trains on) | rlef (online, on tasks).",
    )
    base: str = _opt(
        "qwen2.5-coder-1.5b",
        "--base",
        "Registered model, .gguf file or HF dir (default: the current model).",
    )
    data_dir: Path = _opt(
        ..., "--data", "Dataset dir from `fixloop data build` (default: DATA_DIR/datasets)."
    )
    out_dir: Path = _opt(Path("runs"), "--out", "Parent of the run directory.")
    lora: bool = _opt(True, "--lora/--full", "LoRA adapter or all weights.")
    lora_r: int = _opt(16, "--lora-r", "LoRA rank.", ge=1)
    lora_alpha: int | None = _opt(None, "--lora-alpha", "LoRA alpha (default: 2 x rank).", ge=1)
    lora_dropout: float = _opt(0.05, "--lora-dropout", "Dropout on the LoRA input.", ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"
    epochs: float = _opt(1.0, "--epochs", "Passes over the data.", gt=0)
    max_steps: int | None = _opt(
        None,
        "--max-steps",
        "Stop after N optimizer steps (with --resume: an RLEF run's new end).",
        ge=1,
    )
    lr: float = _opt(2e-4, "--lr", "Peak learning rate (cosine schedule).", gt=0)
    batch_size: int = _opt(4, "--batch-size", "Sequences (or pairs) per device per step.", ge=1)
    grad_accum: int = _opt(1, "--grad-accum", "Micro-batches per optimizer step.", ge=1)
    max_len: int = _opt(1024, "--max-len", "Tokens per sequence; longer ones are cut.", ge=16)
    warmup_ratio: float = _opt(0.03, "--warmup-ratio", "Linear warmup share.", ge=0.0, lt=1.0)
    weight_decay: float = _opt(0.0, "--weight-decay", "AdamW weight decay.", ge=0.0)
    max_grad_norm: float = _opt(1.0, "--max-grad-norm", "Gradient clipping norm.", gt=0)
    beta: float = _opt(0.1, "--beta", "DPO/KTO temperature on the log-ratio.", gt=0)
    rpo_alpha: float | None = _opt(
        None,
        "--rpo-alpha",
        "DPO: add this weight times the chosen reply's per-token NLL (RPO, Pang et al. 2024; "
        "TRL's loss_type ['sigmoid', 'sft']), so the chosen reply's likelihood does not fall.",
        gt=0,
    )
    kto_desirable_weight: float = _opt(1.0, "--kto-desirable-weight", "KTO: desirable loss.", gt=0)
    kto_undesirable_weight: float = _opt(
        1.0, "--kto-undesirable-weight", "KTO: undesirable loss.", gt=0
    )
    seed: int = _opt(0, "--seed", "Seed of LoRA init, data order and dropout.")
    save_every: int = _opt(100, "--save-every", "Checkpoint every N steps.", ge=1)
    keep_checkpoints: int = _opt(2, "--keep-checkpoints", "Checkpoints kept.", ge=1)
    bf16: bool | None = _opt(
        None, "--bf16/--no-bf16", "bf16 (default: where the GPU or CPU computes it natively)."
    )
    gradient_checkpointing: bool | None = _opt(
        None,
        "--gradient-checkpointing/--no-gradient-checkpointing",
        "Trade compute for memory (default: on for dpo and kto, whose rows are two sequences "
        "each, scored by the policy and the reference, and for leti, which scores every "
        "position; for sft and ilf, on when a step would not fit in the memory available "
        "without it, as the 1.5B's does not in 23 GB).",
    )
    group_by_length: bool | None = _opt(
        None,
        "--group-by-length/--no-group-by-length",
        "Batch rows of similar length together, so less of each batch is padding (default: on "
        "for sft, leti and ilf, the only methods it applies to).",
    )
    limit: int | None = _opt(None, "--limit", "Train on the first N rows.", ge=1)
    with_repair: bool = _opt(
        False,
        "--with-repair",
        "SFT: also train on repair.jsonl (failed, shown the feedback, repaired: loss on the "
        "repairing reply).",
    )
    preferences: bool = _opt(
        False,
        "--preferences",
        "DPO on your standing preferences' pairs (pref_dpo.jsonl); with retrain, an online "
        "round samples them first (fixloop prefs).",
    )
    suite: str = _opt("mbpp", "--suite", "RLEF: the tasks to play (mbpp train, or a .jsonl).")
    group: int = _opt(4, "--group", "RLEF: episodes per task (GRPO's group).", ge=2)
    turns: int = _opt(3, "--turns", "RLEF: attempts per episode.", ge=1)
    kl: float = _opt(0.04, "--kl", "RLEF: KL penalty to the initial policy.", ge=0.0)
    max_new_tokens: int = _opt(384, "--max-new-tokens", "RLEF: tokens per reply.", ge=1)
    split: str | None = Field("train", description="rows of this split (None: all rows)")

    @model_validator(mode="after")
    def _alpha(self) -> TrainConfig:
        if self.lora_alpha is None:
            self.lora_alpha = 2 * self.lora_r
        if self.gradient_checkpointing is None and self.method in (*PAIRED_METHODS, "leti"):
            # Measured on the 0.5B (docs/BENCHMARKS.md): DPO without it was killed for
            # memory at 24 GB RSS; with it, under 10 GB at 12% more time per step. LeTI too:
            # its loss covers every position, and 4 rows of 1,024 tokens took 24 GB. For the
            # others it stays None: the loaded model's size decides (trainer.train.memory).
            self.gradient_checkpointing = True
        if self.group_by_length is None:
            # LeTI's rows padded to the longest of 4 random ones: 65% real tokens; grouped, 98%
            # (docs/BENCHMARKS.md). TRL's other trainers have no input_ids column to group by.
            self.group_by_length = self.method in SEQUENCE_METHODS
        elif self.group_by_length and self.method not in SEQUENCE_METHODS:
            raise ValueError(
                f"--group-by-length batches the rows of sft, leti and ilf; {self.method} has no "
                "single sequence per row to group by. Leave it off."
            )
        if self.with_repair and self.method != "sft":
            raise ValueError("--with-repair adds repair trajectories to SFT; use --method sft")
        if self.preferences and self.method != "dpo":
            raise ValueError("--preferences trains DPO on preference pairs; use --method dpo")
        if self.rpo_alpha is not None and self.method != "dpo":
            raise ValueError("--rpo-alpha weighs an NLL term in the DPO loss; use --method dpo")
        return self

    @property
    def data_file(self) -> Path:
        return self.data_dir / dataset_file(self.method, preferences=self.preferences)

    @property
    def data_files(self) -> list[Path]:
        """Every dataset file the run reads (SFT --with-repair: sft.jsonl and repair.jsonl)."""
        extra = [self.data_dir / REPAIR_FILE] if self.with_repair else []
        return [self.data_file, *extra]

    @property
    def needs_leti_tokens(self) -> bool:
        return self.method == "leti"


def cli_options() -> list[tuple[str, str, str, Any, Any]]:
    """(field, flag, help, type, default) of each option, in declaration order. On the
    command line --base and --data default to None: the CLI takes them from the settings."""
    out = []
    for name, field in TrainConfig.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and "flag" in extra:
            kind: Any = str if name == "method" else field.annotation  # the CLI checks METHODS
            default = None if name in ("base", "data_dir") else field.default
            if default is None and kind in (str, Path):
                kind = kind | None
            out.append((name, str(extra["flag"]), field.description or "", kind, default))
    return out
