"""A Hugging Face checkpoint directory (optionally with a peft adapter), run with transformers.

For trying a freshly trained model before it is exported to GGUF. torch and
transformers are imported only when this backend is built, so chatting with a
GGUF model never needs them. Generation runs in a worker thread feeding a
`TextIteratorStreamer`; closing the stream sets a flag that a stopping
criterion checks after every token.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.backends.base import BackendError, StreamChunk
from agent.events import ChatMessage, ModelIdentity, SamplingParams
from agent.hashing import feed_file

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def is_checkpoint_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def is_peft_dir(path: Path) -> bool:
    return path.is_dir() and (path / "adapter_config.json").is_file()


def adapter_sha256(adapter_dir: Path) -> str:
    """sha256 over the adapter's config and weights, in a fixed order."""
    digest = hashlib.sha256()
    for name in ("adapter_config.json", *ADAPTER_WEIGHTS):
        file = adapter_dir / name
        if file.is_file():
            digest.update(name.encode())
            feed_file(digest, file)
    return digest.hexdigest()


class TransformersBackend:
    """Streams chat completions from a transformers model on CPU or GPU."""

    def __init__(self, checkpoint: Path, *, adapter: Path | None = None, n_ctx: int = 4096) -> None:
        if not is_checkpoint_dir(checkpoint):
            raise BackendError(f"{checkpoint} is not a Hugging Face checkpoint (no config.json)")
        if adapter is not None and not is_peft_dir(adapter):
            raise BackendError(
                f"{adapter} is not a peft adapter directory (no adapter_config.json)"
            )
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise BackendError(
                "the transformers backend needs torch and transformers: pip install -e '.[train]'"
            ) from exc
        self._torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        model = AutoModelForCausalLM.from_pretrained(checkpoint)
        if adapter is not None:
            from peft import PeftModel

            with warnings.catch_warnings():  # peft uses an API transformers deprecated for v6
                warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
                model = PeftModel.from_pretrained(model, adapter)
        self.model = model.to(self.device).eval()
        if not getattr(self.tokenizer, "chat_template", None):
            raise BackendError(
                f"{checkpoint} has no chat template in its tokenizer config; save the tokenizer "
                "of an instruct model with the checkpoint"
            )
        model_ctx = getattr(self.model.config, "max_position_embeddings", None) or n_ctx
        self.n_ctx = min(n_ctx, int(model_ctx))
        self.identity = ModelIdentity(
            name=checkpoint.name,
            backend="transformers",
            adapter_sha256=adapter_sha256(adapter) if adapter else None,
            location=str(checkpoint) + (f" + {adapter}" if adapter else ""),
        )

    def _input_ids(self, messages: list[ChatMessage]) -> Any:
        ids = self.tokenizer.apply_chat_template(
            [m.model_dump() for m in messages],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )["input_ids"]
        return ids

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return int(self._input_ids(messages).shape[-1])

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        response_format: dict[str, Any] | None = None,
    ) -> Iterator[StreamChunk]:
        if response_format is not None:
            raise BackendError(
                "the transformers backend cannot constrain output to a schema; use a GGUF model"
            )
        return self._stream(self._input_ids(messages).to(self.device), params)

    def _stream(self, input_ids: Any, params: SamplingParams) -> Iterator[StreamChunk]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        stop = threading.Event()

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stop.is_set()

        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600.0
        )
        prompt_tokens = int(input_ids.shape[-1])
        max_new = max(1, min(params.max_tokens, self.n_ctx - prompt_tokens))
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": self._torch.ones_like(input_ids),
            "max_new_tokens": max_new,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_Stop()]),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            if params.seed is not None:
                self._torch.manual_seed(params.seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        output: dict[str, Any] = {}

        def generate() -> None:
            try:
                with self._torch.no_grad():
                    output["ids"] = self.model.generate(**kwargs)
            except Exception as exc:  # surfaced to the consumer below
                output["error"] = exc
                streamer.end()

        worker = threading.Thread(target=generate, name="fixloop-generate", daemon=True)
        worker.start()
        try:
            for text in streamer:
                if text:
                    yield StreamChunk(text=text)
        finally:
            stop.set()
            worker.join()
        if "error" in output:
            raise BackendError(f"generation failed: {output['error']}")
        ids = output["ids"][0][prompt_tokens:]
        eos = self.tokenizer.eos_token_id
        finished = len(ids) > 0 and int(ids[-1]) == eos
        yield StreamChunk(
            text="",
            finish_reason="stop" if finished or len(ids) < max_new else "length",
            prompt_tokens=prompt_tokens,
            completion_tokens=len(ids),
        )
