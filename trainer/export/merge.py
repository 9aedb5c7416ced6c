"""A run's weights as a plain Hugging Face directory (adapter merged) or a base config dir.

The converters read HF directories: `merged_hf_dir` reloads the base exactly as training
did (GGUF dequantized or HF dir), resizes it for the run's added tokens, applies the saved
LoRA adapter and merges it. `base_config_dir` writes only the base's config.json, which is
all `convert_lora_to_gguf.py` needs to convert an adapter on its own.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from trainer.train import rundir
from trainer.train.modeling import BaseSource, load_model, peft_compat


def run_meta(run_dir: Path) -> dict[str, Any]:
    meta = rundir.read_json(run_dir / rundir.CONFIG)
    if not (run_dir / rundir.METRICS).is_file():
        raise rundir.RunDirError(
            f"{run_dir} has no {rundir.METRICS}: the run did not finish. "
            f"Finish it with `fixloop train --resume {run_dir}`."
        )
    return meta


def merged_hf_dir(run_dir: Path, out: Path) -> Path:
    """Write the fine-tuned model (base + merged adapter, or the full model) to `out`."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    meta = run_meta(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir / rundir.TOKENIZER))
    shutil.rmtree(out, ignore_errors=True)
    if (run_dir / rundir.FULL_MODEL).is_dir():
        shutil.copytree(run_dir / rundir.FULL_MODEL, out)
        tokenizer.save_pretrained(out)
        return out
    adapter = run_dir / rundir.ADAPTER
    if not adapter.is_dir():
        raise rundir.RunDirError(
            f"{run_dir} has neither {rundir.ADAPTER}/ nor {rundir.FULL_MODEL}/: not a finished run."
        )
    model = load_model(BaseSource.from_dict(meta["base"]), torch.float32)
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        # The added tokens' trained rows come from the adapter; no random init needed.
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with peft_compat():
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def base_config_dir(run_dir: Path, out: Path) -> Path:
    """The base model's config.json (with `architectures`) for the LoRA converter."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    meta = run_meta(run_dir)
    saved = run_dir / rundir.BASE_CONFIG
    if (saved / "config.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(saved, out)
        config = json.loads((out / "config.json").read_text(encoding="utf-8"))
        if not config.get("architectures"):  # RLEF runs before 2026-11-30 saved none
            config["architectures"] = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config["model_type"]]]
            (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        return out
    base = BaseSource.from_dict(meta["base"])
    if base.kind == "gguf":
        config = AutoConfig.from_pretrained(str(base.path.parent), gguf_file=base.path.name)
    else:
        config = AutoConfig.from_pretrained(str(base.path))
    if not config.architectures:
        config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config.model_type]]
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    return out
