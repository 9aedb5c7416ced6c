"""Load a GGUF (optionally with a GGUF LoRA) in llama-cpp-python and make it generate."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

PROBE_PROMPT = "def add(a, b):\n"


class GenerationCheckError(RuntimeError):
    pass


@dataclass(frozen=True)
class GenerationCheck:
    text: str
    tokens: int
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {"text": self.text, "tokens": self.tokens, "seconds": round(self.seconds, 3)}


def check_generates(
    model_path: Path, *, lora_path: Path | None = None, max_tokens: int = 8
) -> GenerationCheck:
    """Greedy-generate `max_tokens` tokens (end-of-text suppressed); finite logits required."""
    from llama_cpp import Llama

    start = time.perf_counter()
    try:
        llm = Llama(
            model_path=str(model_path),
            lora_path=str(lora_path) if lora_path else None,
            n_ctx=256,
            n_batch=64,
            seed=0,
            logits_all=False,
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
        scores = llm.scores[llm.n_tokens - 1]
        if not all(math.isfinite(float(x)) for x in scores[:1000]):
            raise GenerationCheckError(f"{model_path} produces non-finite logits.")
    finally:
        llm.close()
    tokens = int(out["usage"]["completion_tokens"])  # type: ignore[index]
    if tokens == 0:
        raise GenerationCheckError(f"{model_path} loaded but generated no tokens.")
    text = out["choices"][0]["text"]  # type: ignore[index]
    return GenerationCheck(text, tokens, time.perf_counter() - start)
