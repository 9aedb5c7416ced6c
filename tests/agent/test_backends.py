"""Backend selection, the scripted backend, and the OpenAI HTTP backend against a local server."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.backends import Backend, BackendError, make_backend
from agent.backends.openai_http import OpenAIBackend, api_root
from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from agent.events import ChatMessage, SamplingParams, Task
from agent.session import AgentSession
from tests.agent.openai_server import CannedOpenAI, serve

MESSAGES = [
    ChatMessage(role="system", content="You write Python."),
    ChatMessage(role="user", content="Reverse a string."),
]


def test_scripted_backend_streams_pieces_and_counts() -> None:
    backend = ScriptedBackend(["one two three four"], piece_chars=3)
    assert isinstance(backend, Backend)
    chunks = list(backend.stream_chat(MESSAGES, SamplingParams(max_tokens=100)))
    assert "".join(c.text for c in chunks) == "one two three four"
    assert len(chunks) > 3
    last = chunks[-1]
    assert last.finish_reason == "stop" and last.completion_tokens == 4
    assert last.prompt_tokens == backend.count_tokens(MESSAGES)
    with pytest.raises(BackendError, match="no reply left"):
        backend.stream_chat(MESSAGES, SamplingParams())


def test_scripted_backend_cuts_at_max_tokens() -> None:
    backend = ScriptedBackend(["a b c d e f"])
    chunks = list(backend.stream_chat(MESSAGES, SamplingParams(max_tokens=3)))
    assert "".join(c.text for c in chunks) == "a b c"
    assert chunks[-1].finish_reason == "length"


def test_unknown_model_name_says_what_is_known(tmp_path: Path) -> None:
    settings = Settings(model="no-such-model", data_dir=tmp_path, cache_dir=tmp_path)
    with pytest.raises(BackendError, match=r"unknown model 'no-such-model'.*qwen2\.5-coder-1\.5b"):
        make_backend(settings)


def test_missing_package_message_reaches_the_user_unchanged(tmp_path: Path) -> None:
    from agent.models import MissingPackageError, ModelSpec, PartSource, Registry, ensure_model

    ghost = ModelSpec(
        name="ghost",
        description="a model whose package is not installed",
        filename="ghost.gguf",
        sha256="0" * 64,
        size=10,
        parts=[
            PartSource(
                package="fixloop-ghost",
                version="9.9.9",
                module="fixloop_ghost",
                relpath="ghost.gguf",
            )
        ],
        kind="local",
    )
    Registry(tmp_path).add(ghost)
    with pytest.raises(MissingPackageError) as direct:
        ensure_model(ghost, tmp_path / "cache")
    settings = Settings(model="ghost", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(BackendError) as info:
        make_backend(settings)
    assert str(info.value) == str(direct.value)
    assert "pip install" in str(info.value) and "fixloop-ghost==9.9.9" in str(info.value)


def test_hash_mismatch_message_reaches_the_user_unchanged(tmp_path: Path) -> None:
    from agent.models import HashMismatchError, ModelSpec, Registry, ensure_model

    file = tmp_path / "tampered.gguf"
    file.write_bytes(b"GGUF but not the bytes the registry expects")
    spec = ModelSpec(
        name="tampered",
        description="a local file changed after it was registered",
        filename=file.name,
        sha256="1" * 64,
        size=file.stat().st_size,
        path=file,
        kind="local",
    )
    Registry(tmp_path).add(spec)
    with pytest.raises(HashMismatchError) as direct:
        ensure_model(spec, tmp_path / "cache", progress=False)
    settings = Settings(model="tampered", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(BackendError) as info:
        make_backend(settings)
    assert str(info.value) == str(direct.value)
    assert "refusing to load 'tampered'" in str(info.value)


def test_a_directory_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="not a Hugging Face checkpoint"):
        make_backend(Settings(model=str(tmp_path), data_dir=tmp_path))


def test_a_missing_gguf_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="does not exist"):
        make_backend(Settings(model=str(tmp_path / "nope.gguf"), data_dir=tmp_path))


def test_api_root_adds_v1_only_to_a_bare_host() -> None:
    assert api_root("http://h:8080") == "http://h:8080/v1"
    assert api_root("http://h:8080/") == "http://h:8080/v1"
    assert api_root("http://h:11434/v1/") == "http://h:11434/v1"
    assert api_root("http://h/api/openai/v1") == "http://h/api/openai/v1"


def test_openai_backend_streams_from_a_local_server(tmp_path: Path) -> None:
    with serve(CannedOpenAI(["Hello there, world!"], api_key="sekrit")) as server:
        settings = Settings(
            base_url=server.url, api_key="sekrit", data_dir=tmp_path, model="whatever"
        )
        backend = make_backend(settings)
        assert isinstance(backend, OpenAIBackend)
        assert backend.identity.backend == "openai" and backend.identity.name == "tiny-coder"
        assert backend.identity.location == server.url
        params = SamplingParams(temperature=0.3, max_tokens=50, seed=7)
        chunks = list(backend.stream_chat(MESSAGES, params))
        backend.close()
    assert "".join(c.text for c in chunks) == "Hello there, world!"
    last = chunks[-1]
    assert last.finish_reason == "stop" and last.prompt_tokens == 42 and last.completion_tokens == 4
    sent = server.requests[0]
    assert sent["model"] == "tiny-coder" and sent["stream"] is True
    assert sent["messages"] == [m.model_dump() for m in MESSAGES]
    assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.3, 50, 7)


def test_openai_backend_errors_name_the_fix(tmp_path: Path) -> None:
    with serve(CannedOpenAI([], api_key="right")) as server:
        with pytest.raises(BackendError, match=r"HTTP 401.*API key"):
            OpenAIBackend(server.url, api_key="wrong")
        backend = OpenAIBackend(server.url, api_key="right")
        with pytest.raises(BackendError, match="HTTP 500"):
            list(backend.stream_chat(MESSAGES, SamplingParams()))
        backend.close()
    with pytest.raises(BackendError, match="cannot reach the model server"):
        OpenAIBackend(server.url)  # the server is gone


def test_a_whole_episode_over_http(tmp_path: Path) -> None:
    replies = [
        "```python\ndef rev(s):\n    return s\n```",
        "```python\ndef rev(s):\n    return s[::-1]\n```",
    ]
    with serve(CannedOpenAI(replies)) as server:
        settings = Settings(
            base_url=server.url, sessions_dir=tmp_path, data_dir=tmp_path, policy="greedy"
        )
        backend = make_backend(settings)
        task = Task(text="Reverse a string.", tests=["assert rev('ab') == 'ba'"])
        session = AgentSession(task, backend, settings, purpose="solve")
        events = list(session.start())
        backend.close()  # type: ignore[attr-defined]
    assert events[-1].type == "episode_finished" and events[-1].outcome == "passed"
    second = server.requests[1]["messages"]
    assert second[-1]["role"] == "user" and "expected: 'ba'" in second[-1]["content"]


def test_default_threads_uses_the_cores_that_are_free() -> None:
    import os

    from agent.backends.llama_cpp import default_threads

    cores = len(os.sched_getaffinity(0))
    assert default_threads(busy=0.0) == cores
    assert default_threads(busy=0.4) == cores  # fixloop's own last burst is not "busy"
    assert default_threads(busy=cores + 5.0) == 1
    assert default_threads(busy=1.6) == max(1, cores - 2)


def test_busy_cores_measures_now_not_the_lagging_load_average(monkeypatch) -> None:
    """Regression: an idle machine whose 1-minute load average still said 1.6 (a process
    that had just ended) got one llama.cpp thread of two, and half the speed."""
    import os

    from agent.backends import llama_cpp

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (float(cores), 1.0, 1.0))
    idle = iter([(100.0, 1000.0), (100.0, 1100.0)])  # no busy jiffies in between
    assert llama_cpp.busy_cores(0.0, sample=lambda: next(idle)) == 0.0
    half = iter([(0.0, 0.0), (50.0, 100.0)])
    assert llama_cpp.busy_cores(0.0, sample=lambda: next(half)) == 0.5 * cores
    # Without /proc/stat the load average is all there is.
    assert llama_cpp.busy_cores(0.0, sample=lambda: None) == float(cores)
    monkeypatch.setattr(llama_cpp, "busy_cores", lambda: 0.0)
    assert llama_cpp.default_threads() == cores
