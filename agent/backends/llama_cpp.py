"""llama.cpp in process (llama-cpp-python): the default backend.

A model is loaded once per process and shared: loaded `Llama` objects are
cached by (path, adapter, n_ctx). Prompts use the chat template stored in the
GGUF, and token counts are taken with that same template, so the loop's
context budgeting is exact. `response_format={"type": "json_object",
"schema": ...}` constrains the output with a grammar built from the schema.

The prompt prefix is paid for once: a `Llama` keeps the tokens it has evaluated (its KV
cache), and the next generation re-evaluates only what follows the longest prefix it shares
with them (`Llama.generate` in llama-cpp-python). A repair turn re-sends the conversation,
whose head (the earlier prompt and most of the reply) is still cached; a fresh sample of the
same task shares the system prompt and the task. Each reply reports the prompt tokens it
actually evaluated (`StreamChunk.prompt_tokens_evaluated`, computed by `tokens_to_evaluate`
from the cached tokens before the call). `prompt_cache=False` clears the cache before every
generation (only to measure what the reuse saves).
"""

from __future__ import annotations

import atexit
import math
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from agent.backends.base import BackendError, StreamChunk
from agent.backends.llama_repack import model_params, repack_enabled
from agent.cpu import CPUINFO, cpu_fields
from agent.events import ChatMessage, ModelIdentity, SamplingParams

_CACHE: dict[tuple[str, str | None, int, bool], tuple[Any, threading.Lock]] = {}
_CACHE_LOCK = threading.Lock()


def _cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _cpu_times(stat: Path = Path("/proc/stat")) -> tuple[float, float] | None:
    """(busy, total) jiffies of all cores since boot, or None where /proc/stat is absent."""
    try:
        fields = [float(x) for x in stat.read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user time
    return total - idle, total


def busy_cores(
    interval: float = 0.25, sample: Callable[[], tuple[float, float] | None] = _cpu_times
) -> float:
    """How many cores are busy right now, measured over `interval` seconds.

    The 1-minute load average lags: a process that ended a minute ago still counts,
    which made a model loaded on an idle machine take one thread of two (measured:
    10 tok/s instead of 20 for the 0.5B). The load average is only the fallback.
    """
    cores = _cores()
    first = sample()
    if first is not None:
        time.sleep(interval)
        second = sample()
        if second is not None and second[1] > first[1]:
            share = (second[0] - first[0]) / (second[1] - first[1])
            return max(0.0, share) * cores
    return os.getloadavg()[0]


def default_threads(busy: float | None = None) -> int:
    """Cores not already busy: all of them on an idle machine, one on a saturated one.

    llama.cpp synchronises its threads at every layer, so a thread that has to wait for
    a core slows every token; on a loaded machine fewer threads are faster. A core
    counts as free until it is more than half busy.
    """
    cores = _cores()
    busy = busy_cores() if busy is None else busy
    return max(1, min(cores, math.floor(cores - busy + 0.5)))


@atexit.register
def _close_models() -> None:
    """Free cached models before interpreter shutdown tears down llama_cpp's globals."""
    with _CACHE_LOCK:
        for llm, _ in _CACHE.values():
            llm.close()
        _CACHE.clear()


def _cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's name with its family and model numbers (a cloud CPU's name can be as bare
    as "AMD EPYC", and two generations of it run different kernels)."""
    fields = cpu_fields(cpuinfo)
    name = fields.get("model name") or fields.get("Model") or platform.machine()
    numbers = [f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields]
    return f"{name} ({', '.join(numbers)})" if numbers else name


@cache
def kernels() -> str:
    """The CPU and the llama.cpp build that compute the logits here. Greedy decoding repeats
    token for token on one machine; on another CPU the kernels round differently and the
    low-margin tokens of repair turns change (docs/BENCHMARKS.md, "The shipped adapter on a
    new machine"), so results files record this beside the weights."""
    import llama_cpp

    features = llama_cpp.llama_print_system_info().decode(errors="replace")
    features = " ".join(features.replace("|", " ").split())
    return f"{_cpu_model()}; llama-cpp-python {llama_cpp.__version__}; {features}"


def _load(
    path: Path,
    adapter: Path | None,
    n_ctx: int,
    n_threads: int | None,
    n_gpu: int,
    repack: bool | None = None,
) -> tuple[Any, threading.Lock]:
    """The cached (Llama, generation lock) for this model file, adapter and context size."""
    repack = repack_enabled(repack)
    key = (str(path), str(adapter) if adapter else None, n_ctx, repack)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - a broken install
            raise BackendError(
                "llama-cpp-python is not installed; install fixloop with its dependencies "
                "(pip install -e .) or use --base-url for a model served elsewhere"
            ) from exc
        if not path.is_file():
            raise BackendError(f"model file {path} does not exist")
        if adapter is not None:
            if not adapter.is_file():
                raise BackendError(
                    f"LoRA adapter {adapter} does not exist (give a GGUF adapter file)"
                )
            with open(adapter, "rb") as fh:
                if fh.read(4) != b"GGUF":
                    raise BackendError(
                        f"LoRA adapter {adapter} is not a GGUF file; convert a peft adapter "
                        "with the trainer's export (lora-only) first"
                    )
        try:
            with model_params(repack=repack):
                llm = Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads or default_threads(),
                    n_gpu_layers=n_gpu,
                    lora_path=str(adapter) if adapter else None,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise BackendError(
                f"llama.cpp could not load {path}"
                + (f" with adapter {adapter}" if adapter else "")
                + f": {exc}. Check that it is a GGUF model (and a matching GGUF LoRA)."
            ) from exc
        # llama-cpp-python 0.3.x misses a NULL adapter (its `is None` check never fires) and
        # would run the bare model under the adapter's name: check it was really applied.
        if adapter is not None and not getattr(llm, "_lora_adapter", True):
            llm.close()
            raise BackendError(
                f"llama.cpp could not apply the LoRA adapter {adapter} to {path.name}: it must "
                "be a GGUF LoRA made for this base model (the trainer's lora-only export)"
            )
        _CACHE[key] = (llm, threading.Lock())
        return _CACHE[key]


class LlamaCppBackend:
    """Streams chat completions from a GGUF model loaded in this process."""

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        sha256: str | None,
        n_ctx: int = 4096,
        adapter: Path | None = None,
        adapter_sha256: str | None = None,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        llama_repack: bool | None = None,
        prompt_prefix: str = "",
        prompt_cache: bool = True,
    ) -> None:
        self.path = path
        self.prompt_cache = prompt_cache
        # Put before the first user message: a LeTI-trained model is asked for a good
        # program with its reward token (`<|good|>`), as it was trained.
        self.prompt_prefix = prompt_prefix
        # One generation at a time on a shared model: the lock travels with it.
        self.llm, self._lock = _load(path, adapter, n_ctx, n_threads, n_gpu_layers, llama_repack)
        self.n_ctx = int(self.llm.n_ctx())
        self.identity = ModelIdentity(
            name=name,
            backend="llama.cpp",
            gguf_sha256=sha256,
            adapter_sha256=adapter_sha256,
            location=str(path),
            kernels=kernels(),
        )
        self._formatter = self._chat_formatter()

    def _chat_formatter(self) -> Any:
        """The GGUF's own chat template, made the one llama-cpp-python uses too."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        self.llm.chat_format = "chat_template.default"  # not a guessed built-in look-alike

        def text(token: int) -> str:
            if token < 0:
                return ""
            return self.llm.detokenize([token], special=True).decode("utf-8", "replace")

        return Jinja2ChatFormatter(
            template=template,
            eos_token=text(self.llm.token_eos()),
            bos_token=text(self.llm.token_bos()),
        )

    def _prefixed(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """The messages with `prompt_prefix` put before the first user message's text."""
        if not self.prompt_prefix:
            return messages
        out = list(messages)
        for i, m in enumerate(out):
            if m.role == "user":
                out[i] = ChatMessage(role="user", content=self.prompt_prefix + m.content)
                break
        return out

    def _render(self, messages: list[ChatMessage]) -> tuple[str, bool]:
        messages = self._prefixed(messages)
        dicts = [m.model_dump() for m in messages]
        if self._formatter is not None:
            result = self._formatter(messages=dicts)
            return result.prompt, bool(result.added_special)
        rendered = "".join(f"{m.role}: {m.content}\n" for m in messages) + "assistant: "
        return rendered, False

    def prompt_token_ids(self, messages: list[ChatMessage]) -> list[int]:
        """The prompt's tokens exactly as llama-cpp-python's chat handler makes them."""
        prompt, added_special = self._render(messages)
        return list(
            self.llm.tokenize(prompt.encode("utf-8"), add_bos=not added_special, special=True)
        )

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return len(self.prompt_token_ids(messages))

    def tokens_to_evaluate(self, tokens: list[int]) -> int:
        """How many of the prompt `tokens` the next generation will evaluate, given what the
        model holds now (call it with the model's lock held, just before generating).

        `Llama.generate`'s rule (llama-cpp-python 0.3.x): it keeps the longest prefix shared
        by the cached tokens and the prompt and evaluates the rest; a prompt that is all
        cached has its last token evaluated again (for fresh logits), unless the cache ends
        exactly there with live logits, when nothing is evaluated.
        """
        import numpy as np

        llm = self.llm
        n_cached = int(llm.n_tokens)
        if n_cached == 0 or not tokens:
            return len(tokens)
        n = min(n_cached, len(tokens))
        same = np.asarray(llm.input_ids[:n]) == np.asarray(tokens[:n], dtype=np.intc)
        prefix = n if bool(same.all()) else int(np.argmin(same))
        consumed = prefix == len(tokens)
        if consumed and n_cached == len(tokens) and not getattr(llm, "_requires_eval", True):
            return 0
        reuse = prefix - 1 if consumed else prefix
        return len(tokens) - reuse if reuse > 0 else len(tokens)

    def count_text_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        response_format: dict[str, Any] | None = None,
    ) -> Iterator[StreamChunk]:
        tokens = self.prompt_token_ids(messages)
        prompt_tokens = len(tokens)
        if prompt_tokens >= self.n_ctx:
            raise BackendError(
                f"the prompt takes {prompt_tokens} tokens but the context holds {self.n_ctx}; "
                "raise --n-ctx or shorten the conversation"
            )
        max_tokens = min(params.max_tokens, self.n_ctx - prompt_tokens)
        return self._stream(messages, params, max_tokens, tokens, response_format)

    def _stream(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        max_tokens: int,
        tokens: list[int],
        response_format: dict[str, Any] | None,
    ) -> Iterator[StreamChunk]:
        prompt_tokens = len(tokens)
        with self._lock:
            if not self.prompt_cache:
                self.llm.reset()  # forget the evaluated tokens: the whole prompt is evaluated
            # Known before the first token and sent with it: a reply stopped early (a
            # complete code block, a cancel) never reaches the last chunk.
            evaluated: int | None = self.tokens_to_evaluate(tokens)
            stream = self.llm.create_chat_completion(
                messages=[m.model_dump() for m in self._prefixed(messages)],
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=max_tokens,
                seed=params.seed,
                stop=params.stop or [],
                response_format=response_format,
                stream=True,
            )
            pieces: list[str] = []
            finish: str | None = None
            try:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content") or ""
                    if text:
                        pieces.append(text)
                        yield StreamChunk(text=text, prompt_tokens_evaluated=evaluated)
                        evaluated = None
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
            finally:
                stream.close()  # stops generation when the consumer stops early
        yield StreamChunk(
            text="",
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=self.count_text_tokens("".join(pieces)),
            prompt_tokens_evaluated=evaluated,  # a reply without text: not sent yet
        )
