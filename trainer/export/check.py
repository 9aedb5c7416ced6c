"""Load a GGUF (optionally with a GGUF LoRA) in llama-cpp-python and make it generate."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.errors import FixloopError

PROBE_PROMPT = "def add(a, b):\n"


class GenerationCheckError(FixloopError, RuntimeError):
    pass


@dataclass(frozen=True)
class GenerationCheck:
    text: str
    tokens: int
    seconds: float
    logit_min: float  # over the vocabulary, at the last evaluated position
    logit_max: float

    def as_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 3),
            "logit_range": [round(self.logit_min, 3), round(self.logit_max, 3)],
        }


def check_generates(
    model_path: Path, *, lora_path: Path | None = None, max_tokens: int = 8
) -> GenerationCheck:
    """Greedy-generate `max_tokens` tokens (end-of-text suppressed); finite logits required.

    `logits_all=True` matters: without it llama-cpp-python never writes `Llama.scores`,
    and reading it returns whatever the allocation held.
    """
    from llama_cpp import Llama

    from agent.backends.llama_repack import model_params, repack_from_environment

    start = time.perf_counter()
    try:
        with model_params(repack=repack_from_environment()):
            llm = Llama(
                model_path=str(model_path),
                lora_path=str(lora_path) if lora_path else None,
                n_ctx=256,
                n_batch=64,
                seed=0,
                logits_all=True,
                verbose=False,
            )
    except (ValueError, RuntimeError) as exc:
        raise GenerationCheckError(f"llama.cpp could not load {model_path}: {exc}") from exc
    try:
        out = llm.create_completion(
            PROBE_PROMPT,
            max_tokens=max_tokens,
            temperature=0.0,
            logit_bias={llm.token_eos(): -1e9},
        )
        scores = np.asarray(llm.scores[: llm.n_tokens], dtype=np.float32)
        if scores.size == 0 or not np.isfinite(scores).all():
            raise GenerationCheckError(f"{model_path} produces non-finite logits.")
        last = scores[-1]
    finally:
        llm.close()
    tokens = int(out["usage"]["completion_tokens"])  # type: ignore[index]
    if tokens == 0:
        raise GenerationCheckError(f"{model_path} loaded but generated no tokens.")
    text = out["choices"][0]["text"]  # type: ignore[index]
    seconds = time.perf_counter() - start
    return GenerationCheck(text, tokens, seconds, float(last.min()), float(last.max()))
