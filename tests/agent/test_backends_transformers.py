"""The transformers backend on a tiny random Llama with the real SmolLM2 tokenizer (+ peft)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from agent.backends import BackendError, make_backend
from agent.config import Settings
from agent.events import ChatMessage, SamplingParams

pytestmark = pytest.mark.slow

MESSAGES = [ChatMessage(role="user", content="Write a function that adds two numbers.")]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from agent import paths
    from agent.models import builtin_models, ensure_model
    from tests.trainer.tiny import make_tiny_base

    gguf = ensure_model(builtin_models()["smollm2-135m"], paths.default_cache_dir(), progress=False)
    return make_tiny_base(tmp_path_factory.mktemp("tiny") / "base", gguf)


@pytest.fixture(scope="module")
def tiny_adapter(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    with warnings.catch_warnings():  # peft calls a transformers API deprecated for v6
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
        lora = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    out = tmp_path_factory.mktemp("adapter") / "lora"
    lora.save_pretrained(out)
    return out


def test_checkpoint_streams_greedy_and_counts(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from agent.backends.transformers_backend import TransformersBackend

    backend = make_backend(Settings(model=str(tiny_checkpoint), data_dir=tmp_path, n_ctx=4096))
    assert isinstance(backend, TransformersBackend)
    assert backend.identity.backend == "transformers" and backend.identity.name == "base"
    assert backend.n_ctx == 512  # capped by the model's max_position_embeddings
    n = backend.count_tokens(MESSAGES)
    assert n > 5
    params = SamplingParams(temperature=0.0, max_tokens=8)
    first = list(backend.stream_chat(MESSAGES, params))
    second = list(backend.stream_chat(MESSAGES, params))
    assert "".join(c.text for c in first) == "".join(c.text for c in second)
    last = first[-1]
    assert last.prompt_tokens == n and 0 < (last.completion_tokens or 0) <= 8
    assert last.finish_reason in ("stop", "length")


def test_closing_the_stream_stops_the_worker(tiny_checkpoint: Path, tmp_path: Path) -> None:
    backend = make_backend(Settings(model=str(tiny_checkpoint), data_dir=tmp_path))
    stream = backend.stream_chat(MESSAGES, SamplingParams(max_tokens=400))
    for chunk in stream:
        if chunk.text:
            break
    stream.close()  # type: ignore[attr-defined] - joins the generation thread
    import threading

    assert not any(t.name == "fixloop-generate" for t in threading.enumerate())


def test_peft_adapter_is_applied_and_hashed(
    tiny_checkpoint: Path, tiny_adapter: Path, tmp_path: Path
) -> None:
    backend = make_backend(
        Settings(model=str(tiny_checkpoint), adapter=tiny_adapter, data_dir=tmp_path)
    )
    ident = backend.identity
    assert ident.adapter_sha256 is not None and len(ident.adapter_sha256) == 64
    assert str(tiny_adapter) in (ident.location or "")
    chunks = list(backend.stream_chat(MESSAGES, SamplingParams(max_tokens=4)))
    assert chunks[-1].completion_tokens


def test_adapter_file_for_a_checkpoint_is_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "lora.gguf"
    bogus.write_bytes(b"GGUF")
    with pytest.raises(BackendError, match="must be a peft adapter directory"):
        make_backend(Settings(model=str(tiny_checkpoint), adapter=bogus, data_dir=tmp_path))
