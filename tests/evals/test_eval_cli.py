"""`fixloop eval` end to end: bad input is refused clearly; a real small model runs a suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixloop.cli import app
from fixloop.cli.eval_cmd import default_out_dir

TASKS = [
    {
        "text": "Write a function that returns the sum of two numbers.",
        "code": "",
        "task_id": 1,
        "test_setup_code": "",
        "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
        "challenge_test_list": [],
    },
    {
        "text": "Write a function that returns a string reversed.",
        "code": "",
        "task_id": 2,
        "test_setup_code": "",
        "test_list": ["assert rev('ab') == 'ba'"],
        "challenge_test_list": [],
    },
]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, sub in (("SESSIONS_DIR", "sessions"), ("DATA_DIR", "data"), ("CACHE_DIR", "cache")):
        monkeypatch.setenv(f"FIXLOOP_{name}", str(tmp_path / sub))
    monkeypatch.setenv("FIXLOOP_MAX_TOKENS", "96")
    monkeypatch.setenv("FIXLOOP_CONFIG_DIR", str(tmp_path / "config"))
    suite = tmp_path / "tiny.jsonl"
    suite.write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    return suite


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["eval", *args])
    return result.exit_code, result.output


def test_bad_input_is_refused_with_the_fix(env: Path) -> None:
    code, out = invoke("--suite", "nope")
    assert code == 2 and "unknown suite 'nope'" in out
    code, out = invoke("--suite", str(env), "--ids", "x")
    assert code == 2 and "not N or A-B" in out
    code, out = invoke("--suite", str(env), "--samples", "3", "--no-progress")
    assert code == 2 and "give --temperature > 0" in out
    code, out = invoke(
        "--suite", str(env), "--samples", "4", "--temperature", "0.8", "--stop-at-pass"
    )
    assert code == 2 and "give --max-turns 1" in out
    code, out = invoke("--suite", str(env), "--stop-at-pass", "--stop-at-public-pass")
    assert code == 2 and "give one of them" in out
    code, out = invoke(
        "--suite", str(env), "--samples", "2", "--temperature", "0.8", "--stop-at-public-pass"
    )
    assert code == 2 and "--stop-at-public-pass with --max-turns 4" in out
    code, out = invoke("--suite", "mbpp", "--split", "test")
    assert code == 2 and "split 'test' is not in" in out
    code, out = invoke("--suite", str(env), "--preferences", "--no-progress")
    assert code == 2 and "no active preferences" in out and "fixloop prefs add" in out


def test_default_out_dir_is_named_by_the_arguments(tmp_path: Path) -> None:
    out = default_out_dir(tmp_path, "mbpp", "validation", "511-520", None, 4, 1, 0.0, 0)
    assert out == tmp_path / "eval" / "mbpp-validation-ids511-520-t4-k1-T0-s0"
    assert default_out_dir(tmp_path, "/x/my tasks.jsonl", None, None, 30, 2, 3, 0.8, 1).name == (
        "my_tasks-n30-t2-k3-T0.8-s1"
    )
    until = default_out_dir(tmp_path, "humaneval", None, None, None, 1, 4, 0.8, 0, stop_at="pass")
    assert until.name == "humaneval-t1-k4-T0.8-s0-until-pass"
    public = default_out_dir(
        tmp_path, "humaneval", None, None, None, 1, 4, 0.8, 0, stop_at="public-pass"
    )
    assert public.name == "humaneval-t1-k4-T0.8-s0-until-public-pass"


@pytest.mark.slow
def test_eval_with_a_real_small_model_end_to_end(env: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--suite", str(env), "--model", "smollm2-135m", "--max-turns", "2", "--out", str(out)]
    code, output = invoke(*args, "--no-progress", "--workers", "2")
    assert code == 0, output
    assert "pass@1 (first attempt)" in output and "pass within 2 turns" in output
    data = json.loads((out / "results.json").read_text())
    (run,) = data["runs"]
    assert run["model"] == "smollm2-135m" and run["n_tasks"] == 2 and run["episodes"] == 2
    assert run["completion_tokens"] > 0 and run["tokens_per_s"] > 0
    assert run["model_key"].startswith("smollm2-135m:")
    assert (out / "pass_by_turn.png").read_bytes()[:4] == b"\x89PNG"
    sessions = list((tmp_path / "sessions").glob("*/*.jsonl"))
    assert len(sessions) == 2
    header = json.loads(sessions[0].read_text().splitlines()[0])
    assert header["purpose"] == "eval" and header["task"]["split"] == "test"
    # the same command again resumes: nothing left to do, the same figures, no new session
    code, output2 = invoke(*args, "--no-progress", "--json")
    assert code == 0, output2
    assert json.loads((out / "results.json").read_text())["runs"][0]["passed"] == run["passed"]
    assert len(list((tmp_path / "sessions").glob("*/*.jsonl"))) == 2
