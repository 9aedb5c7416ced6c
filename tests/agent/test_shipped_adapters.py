"""Adapters shipped in the repository: listed beside their base, verified by sha256, shippable."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from agent.models import ModelError, ModelSpec, ensure_model, verify_model
from agent.models.provision import AdapterMismatchError, model_status
from agent.models.registry import base_models
from agent.models.shipped import (
    ShippedAdapterError,
    read_manifests,
    ship,
    shipped_specs,
)


@pytest.fixture
def base(tmp_path: Path) -> ModelSpec:
    """A built-in-like base whose GGUF is a local file (verified like any model)."""
    blob = b"GGUF" + os.urandom(4096)
    path = tmp_path / "base.gguf"
    path.write_bytes(blob)
    return ModelSpec(
        name="base-x",
        description="a base",
        filename="base.gguf",
        sha256=hashlib.sha256(blob).hexdigest(),
        size=len(blob),
        path=path,
    )


def _adapter(directory: Path, name: str, data: bytes, base: str = "base-x") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.gguf").write_bytes(data)
    manifest = {
        "name": name,
        "description": "a shipped fine-tune",
        "base": base,
        "adapter_file": f"{name}.gguf",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "lineage": {"method": "sft", "metrics": {"pass@1": 0.5}},
    }
    (directory / f"{name}.json").write_text(json.dumps(manifest))
    return directory / f"{name}.gguf"


def test_a_shipped_adapter_is_its_base_plus_the_adapter(base: ModelSpec, tmp_path: Path) -> None:
    adapters = tmp_path / "adapters"
    lora = _adapter(adapters, "base-x-sft", b"GGUF-lora")
    (spec,) = shipped_specs({"base-x": base}, adapters)
    assert (spec.name, spec.kind, spec.sha256, spec.adapter) == (
        "base-x-sft",
        "builtin",
        base.sha256,
        lora,
    )
    assert spec.lineage == {"method": "sft", "metrics": {"pass@1": 0.5}, "base": "base-x"}
    cache = tmp_path / "cache"
    assert model_status(spec, cache).state == "unverified"
    assert ensure_model(spec, cache) == base.path
    assert model_status(spec, cache).state == "verified"


def test_a_changed_adapter_is_refused_and_says_how_to_restore_it(
    base: ModelSpec, tmp_path: Path
) -> None:
    adapters = tmp_path / "adapters"
    lora = _adapter(adapters, "base-x-sft", b"GGUF-lora")
    (spec,) = shipped_specs({"base-x": base}, adapters)
    cache = tmp_path / "cache"
    ensure_model(spec, cache)
    lora.write_bytes(b"GGUF-lorb")  # same size, one byte changed: the stamp no longer vouches
    os.utime(lora, ns=(1, 1))
    with pytest.raises(AdapterMismatchError, match="git checkout -- agent/models/adapters"):
        ensure_model(spec, cache)
    with pytest.raises(AdapterMismatchError):
        verify_model(spec, cache, progress=False)


def test_a_missing_adapter_is_a_missing_file_not_a_silent_base(
    base: ModelSpec, tmp_path: Path
) -> None:
    adapters = tmp_path / "adapters"
    lora = _adapter(adapters, "base-x-sft", b"GGUF-lora")
    (spec,) = shipped_specs({"base-x": base}, adapters)
    lora.unlink()
    assert model_status(spec, tmp_path / "cache").state == "missing file"
    with pytest.raises(ModelError, match="needs its adapter"):
        ensure_model(spec, tmp_path / "cache")


def test_a_manifest_naming_an_unknown_base_or_unreadable_is_an_error(tmp_path: Path) -> None:
    adapters = tmp_path / "adapters"
    _adapter(adapters, "orphan", b"GGUF", base="no-such-base")
    with pytest.raises(ShippedAdapterError, match="no-such-base"):
        shipped_specs(base_models(), adapters)
    (adapters / "orphan.json").write_text("{not json")
    with pytest.raises(ShippedAdapterError, match="unreadable"):
        read_manifests(adapters)


def test_ship_copies_a_trained_lora_version_and_round_trips(
    base: ModelSpec, tmp_path: Path
) -> None:
    lora = tmp_path / "run" / "v-lora-f16.gguf"
    lora.parent.mkdir()
    lora.write_bytes(b"GGUF" + os.urandom(100))
    trained = base.model_copy(
        update={
            "name": "base-x-sft-1",
            "kind": "trained",
            "adapter": lora,
            "lineage": {"base": "base-x", "method": "sft", "run_dir": "/home/me/runs/1"},
        }
    )
    adapters = tmp_path / "adapters"
    figures = {"suite": "mbpp/validation", "pass_within": {"1": 3}, "pass_turn": {"t/1": 1}}
    entry = ship(trained, bases={"base-x": base}, directory=adapters, evals=[figures])
    assert (adapters / "base-x-sft-1.gguf").read_bytes() == lora.read_bytes()
    assert "run_dir" not in entry.lineage  # a path on the trainer's machine means nothing here
    manifest = json.loads((adapters / "base-x-sft-1.json").read_text())
    assert manifest["lineage"]["evals"] == [figures]  # what it was measured at travels with it
    (spec,) = shipped_specs({"base-x": base}, adapters)
    assert spec.adapter_sha256 == hashlib.sha256(lora.read_bytes()).hexdigest()
    assert ensure_model(spec, tmp_path / "cache") == base.path


def test_ship_refuses_what_users_could_not_load(base: ModelSpec, tmp_path: Path) -> None:
    merged = base.model_copy(update={"name": "m", "kind": "trained", "lineage": {"base": "x"}})
    with pytest.raises(ShippedAdapterError, match="no GGUF LoRA adapter"):
        ship(merged, bases={"base-x": base}, directory=tmp_path / "a")
    lora = tmp_path / "l.gguf"
    lora.write_bytes(b"GGUF")
    other = merged.model_copy(update={"adapter": lora, "lineage": {"base": "mine"}})
    with pytest.raises(ShippedAdapterError, match="not a built-in model"):
        ship(other, bases={"base-x": base}, directory=tmp_path / "a")
    elsewhere = other.model_copy(update={"lineage": {"base": "base-x"}, "sha256": "0" * 64})
    with pytest.raises(ShippedAdapterError, match="export it again on the built-in base"):
        ship(elsewhere, bases={"base-x": base}, directory=tmp_path / "a")


def test_the_adapters_fixloop_ships_match_their_manifests() -> None:
    """The committed adapters themselves: bytes, base, format and recorded figures."""
    pytest.importorskip("gguf")
    from agent.models.provision import _gguf_fields
    from agent.models.shipped import ADAPTERS_DIR

    entries = read_manifests()
    assert entries, "fixloop ships at least one fine-tuned version"
    bases = base_models()
    for entry in entries:
        path = ADAPTERS_DIR / entry.adapter_file
        data = path.read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (entry.sha256, entry.size)
        assert entry.lineage["base_sha256"] == bases[entry.base].sha256  # made on that base
        fields = _gguf_fields(path)
        assert (fields["general.type"], fields["adapter.type"]) == ("adapter", "lora")
        for figures in entry.lineage["evals"]:  # every recorded task, for a user's rerun
            assert len(figures["pass_turn"]) == figures["n_tasks"]
            passed = sum(turn is not None for turn in figures["pass_turn"].values())
            assert passed == figures["pass_within"][str(figures["max_turns"])]
