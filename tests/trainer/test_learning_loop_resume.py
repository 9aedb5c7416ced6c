"""bench/learning_loop.py resumes a run restored on a fresh machine: an export recorded in
the run directory but missing from this machine's registry is exported again (no training),
and one that is registered is not."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import ModuleType

from agent import paths
from agent.models.registry import ModelSpec, Registry
from tests.bench_scripts import load_bench_script

ROOT = Path(__file__).resolve().parents[2]


def load_bench() -> ModuleType:
    return load_bench_script("learning_loop")


class Recorder:
    """Stands in for the Runner's subprocess: records each fixloop command."""

    dry_run = False

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, args: list[str], capture: bool = False, program: object = None) -> str:
        self.commands.append(args)
        return ""


def restored_run(
    tmp_path: Path, recipe: str = "leti", merged: bool = False
) -> tuple[argparse.Namespace, str, Path]:
    """A run directory as bench/seeds/ restores it: trained and exported, on another machine."""
    out = tmp_path / "exp"
    run_dir = out / "train" / recipe / "20261204-000000"
    run_dir.mkdir(parents=True)
    name = f"qwen2.5-coder-0.5b-{recipe}-exp"
    (out / f"train-{recipe}.json").write_text(json.dumps({"run_dir": str(run_dir)}))
    (out / f"export-{recipe}.json").write_text(json.dumps({"name": name, "run_dir": str(run_dir)}))
    args = argparse.Namespace(out=out, base="qwen2.5-coder-0.5b", merged=merged)
    return args, name, run_dir


def test_an_export_missing_from_this_machines_registry_runs_again(tmp_path: Path) -> None:
    bench = load_bench()
    args, name, run_dir = restored_run(tmp_path)
    run = Recorder()

    assert bench.train_and_export(run, args, "leti", tmp_path / "data") == name

    assert run.commands == [["export", str(run_dir), "--name", name]]


def test_merged_exports_a_lora_recipe_as_retrain_does(tmp_path: Path) -> None:
    bench = load_bench()
    for merged, flags in ((False, ["--lora-only"]), (True, [])):
        args, name, run_dir = restored_run(tmp_path / str(merged), "sft", merged=merged)
        run = Recorder()
        bench.train_and_export(run, args, "sft", tmp_path / "data")
        assert run.commands == [["export", str(run_dir), "--name", name, *flags]]


def test_a_registered_export_is_not_redone(tmp_path: Path) -> None:
    bench = load_bench()
    args, name, _ = restored_run(tmp_path)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    spec = ModelSpec(
        name=name, description="", filename=gguf.name, sha256="0" * 64, size=4, path=gguf,
        kind="trained",
    )  # fmt: skip
    Registry(paths.default_data_dir()).add(spec)
    run = Recorder()

    assert bench.train_and_export(run, args, "leti", tmp_path / "data") == name
    assert run.commands == []

    gguf.unlink()  # registered, but its file is gone: export again
    bench.train_and_export(run, args, "leti", tmp_path / "data")
    assert run.commands and run.commands[0][0] == "export"
