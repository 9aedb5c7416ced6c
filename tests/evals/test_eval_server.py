"""Throughput past one stream (issue 18, item 3): `--workers N` against OpenAI-compatible
servers keeps N generations in flight, an episode stays on one server, and `fixloop eval`
runs against a real llama.cpp server on the tiny model, started and stopped by the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.backends.openai_http import OpenAIBackend
from agent.config import Settings
from agent.events import Task
from evals.llama_server import llama_server, server_command
from evals.results_file import read_results
from evals.runner import run_suite
from fixloop.cli import app
from tests.agent.openai_server import CannedOpenAI, serve

WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"


def tasks(n: int) -> list[Task]:
    return [
        Task(text=f"Add, case {i}.", tests=[f"assert add({i}, 2) == {i + 2}"], task_id=f"w/{i}")
        for i in range(n)
    ]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(sessions_dir=tmp_path / "s", data_dir=tmp_path / "d", exec_timeout=5.0)


def test_workers_keep_n_generations_in_flight_on_a_server(
    settings: Settings, tmp_path: Path
) -> None:
    with serve(CannedOpenAI([RIGHT] * 6, delay_s=0.02)) as server:
        backend = OpenAIBackend(server.url)
        result = run_suite(
            tasks(6),
            settings,
            max_turns=1,
            workers=3,
            out_dir=tmp_path / "out",
            backend=backend,
            progress=False,
        )
        backend.close()
    assert result.passed.count == 6
    assert server.max_in_flight == 3  # not one at a time, as an in-process model is


def test_several_servers_one_eval_and_each_episode_stays_on_its_server(
    settings: Settings, tmp_path: Path
) -> None:
    # Each server answers its episodes in order: wrong, then right. An episode whose second
    # turn went to the other server would get a wrong program there and not pass at turn 2.
    a = CannedOpenAI([WRONG, RIGHT] * 4, delay_s=0.01)
    b = CannedOpenAI([WRONG, RIGHT] * 4, delay_s=0.01)
    with serve(a), serve(b):
        backend = OpenAIBackend(f"{a.url},{b.url}")
        assert backend.identity.location == f"{a.url},{b.url}"
        result = run_suite(
            tasks(4),
            settings,
            max_turns=2,
            workers=2,
            out_dir=tmp_path / "out",
            backend=backend,
            progress=False,
        )
        backend.close()
    assert [t.pass_turns for t in result.tasks] == [[2]] * 4
    assert len(a.requests) >= 2 and len(b.requests) >= 2
    assert len(a.requests) + len(b.requests) == 8


def test_servers_serving_different_models_are_refused() -> None:
    from agent.backends import BackendError

    one, two = CannedOpenAI([], model="one"), CannedOpenAI([], model="two")
    with serve(one), serve(two), pytest.raises(BackendError, match="serve different models"):
        OpenAIBackend(f"{one.url},{two.url}")


def test_server_commands() -> None:
    gguf = Path("/m/model.gguf")
    python = server_command(gguf, 8080, n_ctx=2048, threads=2)
    assert python[1:3] == ["-m", "evals.llama_cpp_server"]
    assert python[python.index("--interrupt_requests") + 1] == "False"  # no cut-off streams
    native = server_command(gguf, 8080, n_ctx=2048, parallel=4, binary="/b/llama-server")
    assert native[:3] == ["/b/llama-server", "-m", str(gguf)]
    assert native[native.index("-np") + 1] == "4" and native[native.index("-c") + 1] == "8192"


TINY_SUITE = [
    {
        "text": "Write a function that returns the sum of two numbers.",
        "task_id": 1,
        "test_setup_code": "",
        "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
        "challenge_test_list": [],
    },
    {
        "text": "Write a function that returns a string reversed.",
        "task_id": 2,
        "test_setup_code": "",
        "test_list": ["assert rev('ab') == 'ba'"],
        "challenge_test_list": [],
    },
]


@pytest.mark.slow
def test_eval_against_a_real_llama_cpp_server_with_two_workers(
    smollm_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("llama_cpp.server.app", reason="pip install 'fixloop[server]'")
    for name, sub in (("SESSIONS_DIR", "sessions"), ("DATA_DIR", "data"), ("CACHE_DIR", "cache")):
        monkeypatch.setenv(f"FIXLOOP_{name}", str(tmp_path / sub))
    monkeypatch.setenv("FIXLOOP_MAX_TOKENS", "64")
    suite = tmp_path / "tiny.jsonl"
    suite.write_text("".join(json.dumps(t) + "\n" for t in TINY_SUITE))
    out = tmp_path / "out"
    log = tmp_path / "server.log"
    with llama_server(smollm_path, n_ctx=2048, alias="smollm2-135m", log_path=log) as url:
        result = CliRunner().invoke(
            app,
            [
                "eval",
                "--suite",
                str(suite),
                "--base-url",
                url,
                "--workers",
                "2",
                "--max-turns",
                "2",
                "--out",
                str(out),
                "--no-progress",
            ],
        )
    assert result.exit_code == 0, result.output + log.read_text(errors="replace")[-2000:]
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    assert run["model"] == url and run["model_key"] == "smollm2-135m"
    assert run["episodes"] == 2 and run["errors"] == 0 and run["completion_tokens"] > 0
    _, records = read_results(Path(run["results_file"]))
    assert sorted(r.task_id for r in records) == ["tiny/1", "tiny/2"]
    assert all(r.turns >= 1 and r.error is None for r in records)
