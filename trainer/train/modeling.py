"""Load a base model for training: from a GGUF (dequantized by transformers) or an HF directory.

Also: LeTI's special tokens (added to the tokenizer, embeddings resized) and the LoRA config.
torch/transformers/peft are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.errors import FixloopError
from trainer.train.config import LETI_TOKENS, TrainConfig


class BaseModelError(FixloopError, ValueError):
    """A --base that cannot be trained from; the message says what to pass instead."""


@dataclass(frozen=True)
class BaseSource:
    """Where the base weights come from."""

    name: str  # what the user passed (registry name or path)
    kind: Literal["gguf", "hf"]
    path: Path  # the .gguf file or the HF model directory
    sha256: str | None = None  # of the GGUF, when it came from the registry

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "path": str(self.path), "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaseSource:
        return cls(data["name"], data["kind"], Path(data["path"]), data.get("sha256"))


def resolve_base(base: str, *, cache_dir: Path, data_dir: Path) -> BaseSource:
    """A registry name, a .gguf file or an HF directory (with config.json) -> BaseSource."""
    candidate = Path(base).expanduser()
    if candidate.is_dir():
        if not (candidate / "config.json").is_file():
            raise BaseModelError(
                f"{candidate} is a directory without config.json; pass a Hugging Face model "
                "directory, a .gguf file or a registered model name (`fixloop models list`)."
            )
        return BaseSource(base, "hf", candidate.resolve())
    if candidate.suffix == ".gguf":
        if not candidate.is_file():
            raise BaseModelError(f"{candidate} does not exist.")
        return BaseSource(base, "gguf", candidate.resolve())
    from agent.models import Registry, ensure_model
    from agent.models.registry import UnknownModelError

    try:
        spec = Registry(data_dir).get(base)
    except UnknownModelError as exc:
        raise BaseModelError(str(exc)) from exc
    if spec.adapter is not None:
        raise BaseModelError(
            f"{base!r} is a base model plus a LoRA adapter; train from a merged export "
            "(`fixloop export RUN_DIR` without --lora-only) or from its base model."
        )
    return BaseSource(base, "gguf", ensure_model(spec, cache_dir), spec.sha256)


def _from_pretrained(cls: Any, src: BaseSource, **kwargs: Any) -> Any:
    if src.kind == "gguf":
        return cls.from_pretrained(str(src.path.parent), gguf_file=src.path.name, **kwargs)
    return cls.from_pretrained(str(src.path), **kwargs)


def load_tokenizer(src: BaseSource) -> Any:
    from transformers import AutoTokenizer

    tok = _from_pretrained(AutoTokenizer, src)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(src: BaseSource, dtype: Any) -> Any:
    """The base as a plain (unquantized) transformers model in `dtype`."""
    from transformers import AutoModelForCausalLM

    model = _from_pretrained(AutoModelForCausalLM, src, dtype=dtype)
    if getattr(model, "hf_quantizer", None) is not None:
        # A GGUF is dequantized on load: drop its quantizer, so that the Trainer trains the
        # model as the plain one it is and save_pretrained writes plain weights.
        model.hf_quantizer.remove_quantization_config(model)
    return model


def base_config(model: Any) -> Any:
    """The loaded base's config as the GGUF LoRA converter needs it (a copy, before any
    vocabulary resize, with `architectures`, which a config read from a GGUF lacks)."""
    import copy

    config = copy.deepcopy(model.config)
    config.architectures = config.architectures or [type(model).__name__]
    return config


def add_leti_tokens(tokenizer: Any, model: Any | None) -> list[int]:
    """Add LeTI's reward/feedback tokens (idempotent) and resize the embeddings; their ids."""
    missing = [t for t in LETI_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if model is not None and model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    return [tokenizer.convert_tokens_to_ids(t) for t in LETI_TOKENS]


def lora_config(cfg: TrainConfig, new_token_ids: list[int]) -> Any:
    """LoRA on the linear layers; the new tokens' embedding rows are trained too (and only
    those rows: peft's trainable tokens, saved in the adapter)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
        trainable_token_indices=list(new_token_ids) or None,
    )


def expose_head_bias(model: Any) -> None:
    """TRL's fused LM head reads `lm_head.weight` and `lm_head.bias`; peft's wrapper of a tied
    head with trainable tokens answers `weight` (base + trained rows) but not `bias`."""
    head = model.get_output_embeddings()
    if head is not None and not hasattr(head, "bias"):
        object.__setattr__(head, "bias", head.token_adapter.base_layer.bias)


@contextmanager
def peft_compat() -> Iterator[None]:
    """peft and TRL call transformers 5's deprecated gradient-checkpointing names
    (`is_gradient_checkpointing`, `gradient_checkpointing_disable`, ...: a FutureWarning on
    every DPO/KTO step); those deprecation warnings, by their message, are silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated",
            category=FutureWarning,
        )
        yield
