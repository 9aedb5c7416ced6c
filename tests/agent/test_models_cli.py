"""`fixloop models` and `fixloop config` through the real console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXLOOP = [sys.executable, "-m", "fixloop"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FIXLOOP, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_version_and_help() -> None:
    out = _run("--version")
    assert out.returncode == 0 and out.stdout.startswith("fixloop ")
    for cmd in ([], ["models"], ["config"]):
        res = _run(*cmd, "--help")
        assert res.returncode == 0, res.stderr
        assert "Usage" in res.stdout


def test_add_verify_and_refuse_corruption(tmp_path: Path, smollm_path: Path) -> None:
    env = {"FIXLOOP_CACHE_DIR": str(tmp_path / "cache")}
    local = tmp_path / "mine.gguf"
    shutil.copyfile(smollm_path, local)
    res = _run("models", "add", str(local), "--name", "mine", env=env)
    assert res.returncode == 0, res.stderr
    listing = _run("models", "list", env=env).stdout
    assert "mine" in listing and "smollm2-135m" in listing and "qwen2.5-coder-1.5b" in listing
    res = _run("models", "verify", "mine", env=env)
    assert res.returncode == 0 and "mine: verified" in res.stdout
    long_name = "qwen2.5-coder-0.5b-teacher-exp13-with-a-long-name"
    assert _run("models", "add", str(local), "--name", long_name, env=env).returncode == 0
    header, *rows = _run("models", "list", env=env).stdout.split("\n\n")[0].splitlines()
    state = header.index("STATE")
    for row in rows:  # every row's state sits under STATE, however long the names
        assert row[state:].split()[0] in {"verified", "unverified", "not", "missing"}, row
    with local.open("r+b") as fh:
        fh.seek(5000)
        byte = fh.read(1)
        fh.seek(5000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    res = _run("models", "verify", "mine", env=env)
    assert res.returncode == 1
    assert "refusing to load 'mine'" in res.stderr and "sha256" in res.stderr


def _llama_lora_header(path: Path) -> Path:
    """A GGUF LoRA for llama models with no tensors: enough to register, not to load."""
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_add_a_gguf_lora_on_a_base(tmp_path: Path, smollm_path: Path) -> None:
    lora = _llama_lora_header(tmp_path / "mine-lora.gguf")
    res = _run("models", "add", str(lora), "--name", "tuned", "--lora-of", "smollm2-135m")
    assert res.returncode == 0, res.stderr
    assert "registered tuned: smollm2-135m + adapter" in res.stdout
    listing = _run("models", "list").stdout
    assert "tuned" in listing and "LoRA mine-lora.gguf on smollm2-135m" in listing
    res = _run("models", "add", str(smollm_path), "--name", "t2", "--lora-of", "smollm2-135m")
    assert res.returncode == 2 and "not a LoRA adapter" in res.stderr


def test_pulling_a_base_verifies_the_versions_built_on_it(tmp_path: Path) -> None:
    """A shipped or trained adapter on a pulled base lists as verified, not "unverified"."""
    env = {"FIXLOOP_CACHE_DIR": str(tmp_path / "cache")}
    lora = _llama_lora_header(tmp_path / "mine-lora.gguf")
    add = _run("models", "add", str(lora), "--name", "tuned", "--lora-of", "smollm2-135m", env=env)
    assert add.returncode == 0, add.stderr
    res = _run("models", "pull", "smollm2-135m", env=env)
    assert res.returncode == 0, res.stderr
    assert "tuned: verified (its adapter, on smollm2-135m)" in res.stdout
    rows = {
        line.split()[0]: line.split()[2:4]
        for line in _run("models", "list", env=env).stdout.split("\n\n")[0].splitlines()[1:]
    }
    assert rows["smollm2-135m"][1] == "verified" and rows["tuned"][1] == "verified", rows
    with lora.open("ab") as fh:  # a changed adapter is named at the next pull, not hidden
        fh.write(b"\0")
    res = _run("models", "pull", "smollm2-135m", env=env)
    assert "tuned: FAILED" in res.stderr and "corrupt or was changed" in res.stderr


def test_unknown_model_and_bad_path_are_clear(tmp_path: Path) -> None:
    res = _run("models", "pull", "no-such-model")
    assert res.returncode == 2 and "unknown model 'no-such-model'" in res.stderr
    res = _run("models", "add", str(tmp_path / "nope.gguf"), "--name", "x")
    assert res.returncode == 2 and "is not a file" in res.stderr


def test_config_show_names_sources(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("max_turns = 7\n")
    res = _run(
        "--config",
        str(cfg),
        "--model",
        "smollm2-135m",
        "config",
        "show",
        env={"FIXLOOP_TEMPERATURE": "0.5"},
    )
    assert res.returncode == 0, res.stderr
    lines = {line.split()[0]: line for line in res.stdout.splitlines()[1:]}
    assert "(flag)" in lines["model"]
    assert "(env:FIXLOOP_TEMPERATURE)" in lines["temperature"]
    assert f"(file:{cfg})" in lines["max_turns"]
    assert "(default)" in lines["n_ctx"]
