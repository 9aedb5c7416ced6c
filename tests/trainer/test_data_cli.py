"""`fixloop data build / summary / seed` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.config import Settings
from fixloop.cli import app
from tests.trainer.data_support import SESSIONS, golden, read_jsonl
from trainer.data.episodes import find_logs, read_log

runner = CliRunner()


def test_build_writes_datasets_table_and_chart(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = runner.invoke(app, ["data", "build", "--sessions", str(SESSIONS), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "refused:" in result.output and "mbpp/11" in result.output
    for fmt, n in golden()["rows"].items():
        assert len(read_jsonl(out / f"{fmt}.jsonl")) == n
        assert any(
            line.split()[:1] == [fmt] and line.split()[3] == str(n)
            for line in result.output.splitlines()
        ), fmt
    png = out / "summary.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["rows"] == golden()["rows"]

    again = runner.invoke(app, ["data", "summary", str(out), "--no-chart"])
    assert again.exit_code == 0 and "pass / fail" in again.output


def test_build_formats_option(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = runner.invoke(
        app,
        [
            "data",
            "build",
            "-s",
            str(SESSIONS),
            "-o",
            str(out),
            "--formats",
            "sft,kto",
            "--no-chart",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["kto.jsonl", "sft.jsonl"]
    bad = runner.invoke(app, ["data", "build", "-s", str(SESSIONS), "-o", str(out), "-f", "ppo"])
    assert bad.exit_code == 2 and "unknown format(s) ppo" in bad.output


def test_build_without_sessions_says_how_to_fix(tmp_path: Path) -> None:
    missing = runner.invoke(
        app, ["data", "build", "-s", str(tmp_path / "none"), "-o", str(tmp_path)]
    )
    assert missing.exit_code == 2 and "--sessions DIR" in missing.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(
        app, ["data", "build", "-s", str(tmp_path / "empty"), "-o", str(tmp_path)]
    )
    assert empty.exit_code == 1 and "no usable sessions" in empty.output


@pytest.mark.parametrize("sub", ["", "inside"])
def test_build_out_naming_a_file_is_refused_before_any_work(tmp_path: Path, sub: str) -> None:
    blocker = tmp_path / "ds.txt"
    blocker.write_text("keep me\n", encoding="utf-8")
    out = blocker / sub if sub else blocker
    result = runner.invoke(app, ["data", "build", "-s", str(SESSIONS), "-o", str(out)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 2, result.output
    assert f"--out {out}" in result.output and f"{blocker} is a file" in result.output
    assert "refused:" not in result.output  # refused before reading any session
    assert blocker.read_text(encoding="utf-8") == "keep me\n"


def test_seed_refuses_evaluation_splits() -> None:
    for args in (["--split", "test"], ["--split", "validation"], ["--suite", "humaneval"]):
        result = runner.invoke(app, ["data", "seed", *args])
        assert result.exit_code == 2 and "refusing to seed" in result.output


@pytest.mark.slow
def test_seed_with_a_real_model_is_resumable_and_builds(
    tmp_path: Path, smollm_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIXLOOP_MAX_TOKENS", "48")  # keep the real model brief
    sessions, progress, out = tmp_path / "sessions", tmp_path / "progress", tmp_path / "ds"
    args = [
        "data", "seed", "--suite", "mbpp", "--split", "train", "--limit", "1",
        "--max-turns", "1", "--model", "smollm2-135m",
        "--sessions-dir", str(sessions), "--out", str(progress),
    ]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    logs = find_logs(sessions)
    assert len(logs) == 1
    for path in logs:
        log, problems = read_log(path)
        assert log is not None and not problems
        assert log.header.purpose == "seed" and log.header.task.split == "train"
        assert log.header.model.name == "smollm2-135m" and log.header.model.gguf_sha256
        # seeds repair (their episodes hold repair rows) though the loop's default resamples
        assert log.header.config["policy"] == "greedy" != Settings().policy

    again = runner.invoke(app, args)  # resumed: the episode is done, nothing runs again
    assert again.exit_code == 0, again.output
    assert find_logs(sessions) == logs

    built = runner.invoke(app, ["data", "build", "-s", str(sessions), "-o", str(out), "--no-chart"])
    assert built.exit_code == 0, built.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [s["session_id"] for s in manifest["sessions"]] == [logs[0].stem]
    assert manifest["rows"]["episodes"] == 1
    runs = sum(
        e.type == "exec_finished" and not e.hidden
        for path in logs
        for e in read_log(path)[0].events  # type: ignore[union-attr]
    )
    assert manifest["formats"]["leti"]["rows_before_hygiene"] == runs  # one row per run
    assert [m["identity"]["name"] for m in manifest["models"].values()] == ["smollm2-135m"]
