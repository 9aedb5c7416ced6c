"""Paying for the shared prompt prefix once (issue 18, item 2): every reply says how many
prompt tokens the model evaluated against how many were sent, and `fixloop eval` sums both.

The llama.cpp tests run the real SmolLM2-135M GGUF and check the backend's count against
the tokens llama-cpp-python actually passed to `Llama.eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.backends.base import StreamChunk
from agent.backends.openai_http import OpenAIBackend, evaluated_tokens
from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from agent.events import ChatMessage, ModelReplied, SamplingParams, Task
from agent.session import AgentSession
from evals import report
from evals.runner import run_suite
from tests.agent.openai_server import CannedOpenAI, serve

MESSAGES = [
    ChatMessage(role="system", content="You are a Python programmer."),
    ChatMessage(role="user", content="Write a function add(a, b)."),
]
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"
ADD = Task(
    text="Write a function add(a, b) that returns the sum.",
    tests=["assert add(1, 2) == 3", "assert add(2, 2) == 4"],
)


def replies_of(events: list[Any]) -> list[ModelReplied]:
    return [e for e in events if isinstance(e, ModelReplied)]


# ---------------------------------------------------------------- the loop and the eval


def test_model_replied_logs_evaluated_and_sent_tokens(tmp_path: Path) -> None:
    backend = ScriptedBackend([WRONG, RIGHT], prefix_cache=True)
    settings = Settings(sessions_dir=tmp_path / "s", max_turns=2, policy="greedy")
    with AgentSession(ADD, backend, settings) as session:
        first, second = replies_of(list(session.start()))
    assert first.prompt_tokens_evaluated == first.prompt_tokens  # nothing cached yet
    assert second.prompt_tokens_evaluated is not None
    # the second turn re-sends turn 1's prompt and reply: only the feedback is new
    assert 0 < second.prompt_tokens_evaluated < second.prompt_tokens
    assert second.prompt_tokens_evaluated < second.prompt_tokens - first.prompt_tokens


def test_a_backend_that_cannot_tell_logs_none(tmp_path: Path) -> None:
    backend = ScriptedBackend([RIGHT])
    with AgentSession(ADD, backend, Settings(sessions_dir=tmp_path / "s")) as session:
        (reply,) = replies_of(list(session.start()))
    assert reply.prompt_tokens_evaluated is None and reply.prompt_tokens > 0


def test_eval_reports_prompt_tokens_sent_and_evaluated(tmp_path: Path) -> None:
    tasks = [
        Task(text="Add.", tests=["assert add(1, 2) == 3"], task_id="t/1", suite="t"),
        Task(text="Add again.", tests=["assert add(2, 2) == 4"], task_id="t/2", suite="t"),
    ]
    settings = Settings(sessions_dir=tmp_path / "s", data_dir=tmp_path / "d")
    cached = run_suite(
        tasks,
        settings,
        max_turns=2,
        out_dir=tmp_path / "cached",
        backend=ScriptedBackend([WRONG, RIGHT, RIGHT], prefix_cache=True),
        progress=False,
    )
    assert cached.prompt_tokens_evaluated is not None
    assert 0 < cached.prompt_tokens_evaluated < cached.prompt_tokens
    rows = {
        line.split("|")[0].strip(): line.split("|")[1].strip()
        for line in report.table([cached]).splitlines()[2:]
    }
    assert rows["prompt tokens sent"] == f"{cached.prompt_tokens:,}"
    assert rows["prompt tokens evaluated"] == f"{cached.prompt_tokens_evaluated:,}"
    assert rows["wall per episode"].endswith(" s")
    unknown = run_suite(
        tasks,
        settings,
        max_turns=2,
        out_dir=tmp_path / "unknown",
        backend=ScriptedBackend([WRONG, RIGHT, RIGHT]),
        progress=False,
    )
    assert unknown.prompt_tokens_evaluated is None
    assert "prompt tokens evaluated | -" in report.table([unknown])


# ---------------------------------------------------------------- an OpenAI-compatible server


def _stream(backend: OpenAIBackend) -> list[StreamChunk]:
    return list(backend.stream_chat(MESSAGES, SamplingParams(max_tokens=20)))


def test_server_asked_to_cache_the_prompt_and_its_count_read_back() -> None:
    with serve(CannedOpenAI(["hi", "hi"], timings={"prompt_n": 7, "cache_n": 35})) as server:
        backend = OpenAIBackend(server.url)
        last = _stream(backend)[-1]
        off = OpenAIBackend(server.url, cache_prompt=False)
        _stream(off)
        backend.close()
        off.close()
    assert [r["cache_prompt"] for r in server.requests] == [True, False]
    assert last.prompt_tokens == 42 and last.prompt_tokens_evaluated == 7


def test_a_server_refusing_cache_prompt_is_asked_again_without_it() -> None:
    with serve(CannedOpenAI(["hi", "hi"], reject_fields=("cache_prompt",))) as server:
        backend = OpenAIBackend(server.url)
        first = _stream(backend)
        second = _stream(backend)
        backend.close()
    assert "".join(c.text for c in first) == "hi" == "".join(c.text for c in second)
    assert [("cache_prompt" in r) for r in server.requests] == [False, False]
    assert first[-1].prompt_tokens_evaluated is None  # it said nothing about its cache


def test_evaluated_tokens_from_llama_cpp_timings_or_openai_cached_tokens() -> None:
    assert evaluated_tokens({}, {"prompt_n": 5}, 40) == 5
    assert evaluated_tokens({"prompt_tokens_details": {"cached_tokens": 32}}, {}, 40) == 8
    assert evaluated_tokens({"prompt_tokens": 40}, {}, 40) is None


# ---------------------------------------------------------------- llama.cpp in process


@pytest.fixture
def smol(smollm_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A private SmolLM2 model (its own n_ctx: not shared with other tests) whose
    `Llama.eval` calls are recorded: (the number of tokens in each call)."""
    from agent.backends.llama_cpp import LlamaCppBackend

    backend = LlamaCppBackend(smollm_path, name="smollm2-135m", sha256=None, n_ctx=1472)
    backend.llm.reset()
    calls: list[int] = []
    real_eval = backend.llm.eval

    def recording_eval(tokens: Any) -> None:
        calls.append(len(tokens))
        real_eval(tokens)

    monkeypatch.setattr(backend.llm, "eval", recording_eval)
    backend.eval_calls = calls
    return backend


def evaluated_of(chunks: list[StreamChunk]) -> int | None:
    """The one evaluated-prompt count a stream carries (with its first text)."""
    counts = [c.prompt_tokens_evaluated for c in chunks if c.prompt_tokens_evaluated is not None]
    assert len(counts) == 1 and chunks[0].prompt_tokens_evaluated == counts[0]
    return counts[0]


def _prompt_eval(backend: Any, messages: list[ChatMessage], max_tokens: int = 12) -> list[Any]:
    """Stream one reply; (the reply's chunks, the tokens llama.cpp evaluated for the prompt)."""
    before = len(backend.eval_calls)
    chunks = list(backend.stream_chat(messages, SamplingParams(max_tokens=max_tokens)))
    return [chunks, backend.eval_calls[before]]


@pytest.mark.slow
def test_llama_cpp_counts_exactly_what_it_evaluates(smol: Any) -> None:
    chunks, evaluated = _prompt_eval(smol, MESSAGES)
    sent = smol.count_tokens(MESSAGES)
    assert evaluated_of(chunks) == evaluated == sent  # a fresh model
    reply = "".join(c.text for c in chunks)
    longer = [
        *MESSAGES,
        ChatMessage(role="assistant", content=reply),
        ChatMessage(role="user", content="It failed: add(1, 2) gave -1. Fix it."),
    ]
    chunks, evaluated = _prompt_eval(smol, longer)
    sent = smol.count_tokens(longer)
    assert evaluated_of(chunks) == evaluated
    assert evaluated < sent - smol.count_tokens(MESSAGES) + 5  # only the new turn, roughly
    # the first prompt again: all of it is cached, its last token is evaluated again
    chunks, evaluated = _prompt_eval(smol, MESSAGES)
    assert evaluated_of(chunks) == evaluated == 1
    # a different system prompt shares (almost) nothing
    other = [ChatMessage(role="system", content="Be brief."), MESSAGES[1]]
    chunks, evaluated = _prompt_eval(smol, other)
    assert evaluated_of(chunks) == evaluated
    assert evaluated > smol.count_tokens(other) - 5


@pytest.mark.slow
def test_an_episodes_second_turn_evaluates_fewer_prompt_tokens_than_it_sends(
    smol: Any, tmp_path: Path
) -> None:
    task = Task(
        text="Write a function mystery(n) that returns n * 7 + 3 when n is prime, else n // 2 - 5.",
        tests=["assert mystery(2) == 17", "assert mystery(9) == -1", "assert mystery(13) == 94"],
    )
    settings = Settings(sessions_dir=tmp_path / "s", max_turns=2, max_tokens=48)
    with AgentSession(task, smol, settings) as session:
        replies = replies_of(list(session.start()))
    assert len(replies) >= 2, "SmolLM2 solved it at once: make the task harder"
    first, second = replies[0], replies[1]
    assert first.prompt_tokens_evaluated == first.prompt_tokens  # nothing cached before
    assert second.prompt_tokens_evaluated is not None
    assert second.prompt_tokens_evaluated < second.prompt_tokens
    # the next sample of the same task starts from the cached system prompt and task
    with AgentSession(task, smol, settings) as session:
        more = replies_of(list(session.start()))
    again = more[0]
    assert again.prompt_tokens_evaluated is not None
    assert again.prompt_tokens_evaluated < again.prompt_tokens
    # every logged count is what llama.cpp really evaluated for that prompt
    prompt_evals = [n for n in smol.eval_calls if n > 1]  # generated tokens go one at a time
    logged = [r.prompt_tokens_evaluated for r in [*replies, *more]]
    assert [n for n in logged if n and n > 1] == prompt_evals


@pytest.mark.slow
def test_prompt_cache_off_evaluates_the_whole_prompt_every_time(smollm_path: Path) -> None:
    from agent.backends.llama_cpp import LlamaCppBackend

    backend = LlamaCppBackend(
        smollm_path, name="smollm2-135m", sha256=None, n_ctx=1536, prompt_cache=False
    )
    for _ in range(2):
        chunks = list(backend.stream_chat(MESSAGES, SamplingParams(max_tokens=4)))
        assert evaluated_of(chunks) == backend.count_tokens(MESSAGES)


@pytest.mark.slow
def test_llama_cpp_names_the_kernels_that_computed_its_logits(smol: Any, tmp_path: Path) -> None:
    from agent.backends.llama_cpp import _cpu_model

    kernels = smol.identity.kernels
    assert kernels is not None and "; llama-cpp-python 0.3" in kernels and "CPU" in kernels
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
                       "model\t\t: 1\nmodel name\t: AMD EPYC\n")  # fmt: skip
    assert _cpu_model(cpuinfo) == "AMD EPYC (cpu family 25, model 1)"
