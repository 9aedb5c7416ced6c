"""The llama.cpp backend on the real SmolLM2-135M GGUF: streaming, counts, identity, limits."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from agent.backends import BackendError, make_backend
from agent.backends.llama_cpp import LlamaCppBackend
from agent.config import Settings
from agent.events import (
    ChatMessage,
    ContextTrimmed,
    EpisodeFinished,
    ModelReplied,
    PromptSent,
    SamplingParams,
)
from agent.events import Task as TaskModel
from agent.models import builtin_models
from agent.session import AgentSession

pytestmark = pytest.mark.slow

SMOL = builtin_models()["smollm2-135m"]
MESSAGES = [
    ChatMessage(role="system", content="You are a helpful assistant."),
    ChatMessage(role="user", content="Write a Python function that adds two numbers."),
]


@pytest.fixture
def smol(smollm_path: Path, tmp_path: Path) -> LlamaCppBackend:
    settings = Settings(model="smollm2-135m", n_ctx=2048, data_dir=tmp_path)
    backend = make_backend(settings)
    assert isinstance(backend, LlamaCppBackend)
    return backend


def test_identity_carries_the_registry_hash(smol: LlamaCppBackend, smollm_path: Path) -> None:
    ident = smol.identity
    assert ident.name == "smollm2-135m" and ident.backend == "llama.cpp"
    assert ident.gguf_sha256 == SMOL.sha256 and ident.adapter_sha256 is None
    assert ident.location == str(smollm_path)
    assert smol.n_ctx == 2048


def test_model_is_loaded_once_per_process(smol: LlamaCppBackend, tmp_path: Path) -> None:
    again = make_backend(Settings(model="smollm2-135m", n_ctx=2048, data_dir=tmp_path))
    assert isinstance(again, LlamaCppBackend) and again.llm is smol.llm


def test_prompt_uses_the_gguf_chat_template(smol: LlamaCppBackend) -> None:
    template = smol.llm.metadata["tokenizer.chat_template"]
    assert "im_start" in template  # SmolLM2 uses ChatML
    prompt, _ = smol._render(MESSAGES)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    assert prompt.endswith("<|im_start|>assistant\n")
    n = smol.count_tokens(MESSAGES)
    longer = smol.count_tokens([*MESSAGES, ChatMessage(role="assistant", content="ok")])
    assert 20 < n < longer


def test_streaming_greedy_is_deterministic_and_counted(smol: LlamaCppBackend) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=12, seed=0)
    first = list(smol.stream_chat(MESSAGES, params))
    second = list(smol.stream_chat(MESSAGES, params))
    text = "".join(c.text for c in first)
    assert text and text == "".join(c.text for c in second)
    assert len([c for c in first if c.text]) > 3  # streamed, not in one piece
    last = first[-1]
    assert last.prompt_tokens == smol.count_tokens(MESSAGES)
    assert last.finish_reason in ("length", "stop")
    assert 0 < (last.completion_tokens or 0) <= 12 + 1
    if last.finish_reason == "length":
        assert abs((last.completion_tokens or 0) - 12) <= 2


def test_closing_the_stream_stops_generation(smol: LlamaCppBackend) -> None:
    stream = smol.stream_chat(MESSAGES, SamplingParams(max_tokens=400))
    pieces = [next(stream).text for _ in range(3)]
    stream.close()  # type: ignore[attr-defined]
    assert all(pieces)
    # The model is free again: the lock was released and a new generation runs.
    assert "".join(c.text for c in smol.stream_chat(MESSAGES, SamplingParams(max_tokens=4)))


def test_json_schema_constrains_the_output(smol: LlamaCppBackend) -> None:
    schema = {
        "type": "object",
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"],
    }
    params = SamplingParams(max_tokens=40)
    chunks = list(
        smol.stream_chat(
            MESSAGES, params, response_format={"type": "json_object", "schema": schema}
        )
    )
    text = "".join(c.text for c in chunks)
    if chunks[-1].finish_reason == "stop":
        data = json.loads(text)
        assert set(data) >= {"path", "content"}
    else:  # cut by max_tokens: still a prefix of a JSON object
        assert text.lstrip().startswith('{"path"') or text.lstrip().startswith('{ "path"')


def test_long_conversation_is_trimmed_not_crashed(
    smol_small_ctx: LlamaCppBackend, tmp_path: Path
) -> None:
    """A task longer than the window allows: it is shortened (and logged), never overflowed."""
    backend = smol_small_ctx
    settings = Settings(
        model="smollm2-135m",
        n_ctx=512,
        max_turns=1,
        max_tokens=96,
        sessions_dir=tmp_path,
        data_dir=tmp_path,
    )
    long_task = "Write a function add(a, b) returning a + b. " + "Be careful here. " * 120
    task = TaskModel(text=long_task, tests=["assert add(1, 2) == 3"])
    session = AgentSession(task, backend, settings, purpose="solve")
    events = list(session.start())
    done = events[-1]
    assert isinstance(done, EpisodeFinished) and done.outcome in ("passed", "failed")
    trim = next(e for e in events if isinstance(e, ContextTrimmed))
    assert trim.tokens_before > 512 - 96 >= trim.tokens_after and trim.n_ctx == 512
    sent = next(e for e in events if isinstance(e, PromptSent))
    assert backend.count_tokens(sent.messages) == sent.prompt_tokens == trim.tokens_after
    assert "assert add(1, 2) == 3" in sent.messages[1].content  # head and tail kept
    reply = next(e for e in events if isinstance(e, ModelReplied))
    assert reply.prompt_tokens + reply.completion_tokens <= 512


@pytest.fixture
def smol_small_ctx(smollm_path: Path, tmp_path: Path) -> LlamaCppBackend:
    backend = make_backend(Settings(model="smollm2-135m", n_ctx=512, data_dir=tmp_path))
    assert isinstance(backend, LlamaCppBackend) and backend.n_ctx == 512
    return backend


def test_cancel_during_real_generation(smol: LlamaCppBackend, tmp_path: Path) -> None:
    settings = Settings(
        model="smollm2-135m", max_tokens=1000, sessions_dir=tmp_path, data_dir=tmp_path
    )
    task = TaskModel(text="Write a very long essay about Python, with code.")
    session = AgentSession(task, smol, settings)
    count = 0
    events = []
    for event in session.start():
        events.append(event)
        if event.type == "token_delta":
            count += 1
            if count == 5:
                threading.Thread(target=session.cancel).start()
    reply = next(e for e in events if isinstance(e, ModelReplied))
    assert reply.finish_reason == "cancelled" and reply.completion_tokens < 100
    assert isinstance(events[-1], EpisodeFinished) and events[-1].outcome == "cancelled"


def test_an_adapter_that_is_not_a_gguf_lora_is_refused(smollm_path: Path, tmp_path: Path) -> None:
    """llama-cpp-python alone would silently run the bare model; fixloop refuses instead."""
    text = tmp_path / "notes.gguf"
    text.write_text("not an adapter")
    with pytest.raises(BackendError, match="is not a GGUF file"):
        make_backend(Settings(model="smollm2-135m", adapter=text, data_dir=tmp_path))
    with pytest.raises(BackendError, match="could not apply the LoRA adapter"):
        # A GGUF, but a whole model rather than a LoRA.
        make_backend(
            Settings(model="smollm2-135m", adapter=smollm_path, n_ctx=512, data_dir=tmp_path)
        )


def test_a_leti_trained_version_is_prompted_with_its_reward_token(
    smol: LlamaCppBackend, smollm_path: Path, tmp_path: Path
) -> None:
    from agent.models import Registry

    reg = Registry(tmp_path)
    trained = SMOL.model_copy(
        update={
            "name": "smol-leti",
            "kind": "trained",
            "parts": [],
            "path": smollm_path,
            "lineage": {"method": "leti", "inference_prefix": "<|good|>"},
        }
    )
    reg.add(trained)
    backend = make_backend(Settings(model="smol-leti", n_ctx=2048, data_dir=tmp_path))
    assert isinstance(backend, LlamaCppBackend) and backend.prompt_prefix == "<|good|>"
    prompt, _ = backend._render(MESSAGES)
    assert "<|im_start|>user\n<|good|>Write a Python function" in prompt
    assert backend.count_tokens(MESSAGES) > smol.count_tokens(MESSAGES)
    assert "<|good|>" not in smol._render(MESSAGES)[0]
