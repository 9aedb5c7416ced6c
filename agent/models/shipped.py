"""Fine-tuned versions shipped with fixloop: a built-in base plus a GGUF LoRA in the repository.

Each one is two files in `agent/models/adapters/`: `<name>.gguf`, the adapter, and
`<name>.json`, its manifest (base, sha256, size, and the lineage with the figures it was
measured at). They are listed beside the built-in bases, load as the base's GGUF with the
adapter applied, and the adapter is checked by sha256 like any model file. `ship` writes
both files from a LoRA-only version the trainer registered (`fixloop models ship NAME`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agent.errors import FixloopError
from agent.hashing import sha256_file
from agent.models.registry import ModelSpec

ADAPTERS_DIR = Path(__file__).parent / "adapters"

# Lineage keys that only make sense on the machine that trained the adapter.
LOCAL_KEYS = ("base_path", "run_dir", "data_manifest", "dataset_file")


class ShippedAdapterError(FixloopError, ValueError):
    """A manifest that cannot be read, or a version that cannot be shipped; says why."""


class ShippedAdapter(BaseModel):
    """The manifest of one shipped adapter."""

    name: str
    description: str
    base: str  # a built-in model name
    adapter_file: str  # beside the manifest
    sha256: str
    size: int
    lineage: dict[str, Any] = Field(default_factory=dict)


def read_manifests(directory: Path = ADAPTERS_DIR) -> list[ShippedAdapter]:
    """Every manifest in `directory`, by file name; a broken one is an error naming it."""
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            found.append(ShippedAdapter.model_validate_json(path.read_text(encoding="utf-8")))
        except (OSError, ValidationError) as exc:
            raise ShippedAdapterError(
                f"shipped adapter manifest {path} is unreadable ({exc}); restore it with "
                "`git checkout -- agent/models/adapters`."
            ) from exc
    return found


def shipped_specs(bases: dict[str, ModelSpec], directory: Path = ADAPTERS_DIR) -> list[ModelSpec]:
    """The registry entries of the shipped adapters: each base's GGUF plus its adapter."""
    specs = []
    for entry in read_manifests(directory):
        base = bases.get(entry.base)
        if base is None:
            raise ShippedAdapterError(
                f"shipped adapter {entry.name!r} names base {entry.base!r}, which is not a "
                f"built-in model ({', '.join(sorted(bases))})."
            )
        specs.append(
            base.model_copy(
                update={
                    "name": entry.name,
                    "description": entry.description,
                    "lineage": {**entry.lineage, "base": entry.base},
                    "adapter": directory / entry.adapter_file,
                    "adapter_sha256": entry.sha256,
                    "adapter_size": entry.size,
                }
            )
        )
    return specs


def ship(
    spec: ModelSpec,
    *,
    bases: dict[str, ModelSpec],
    description: str | None = None,
    directory: Path = ADAPTERS_DIR,
    evals: list[dict[str, Any]] | None = None,
) -> ShippedAdapter:
    """Copy a registered LoRA-only version into `directory` with its manifest.

    `evals` are the figures it was measured at (evals.report.recorded_figures), kept in the
    lineage beside the training metrics.
    """
    base = spec.lineage.get("base")
    if spec.adapter is None or not spec.adapter.is_file():
        raise ShippedAdapterError(
            f"{spec.name!r} has no GGUF LoRA adapter to ship; export it with "
            "`fixloop export RUN_DIR --lora-only` first."
        )
    if base not in bases:
        raise ShippedAdapterError(
            f"{spec.name!r} was trained from {base!r}, not a built-in model; only adapters "
            "on a built-in base can ship (users must be able to get the base)."
        )
    if spec.sha256 != bases[base].sha256:
        raise ShippedAdapterError(
            f"{spec.name!r} applies to a GGUF with sha256 {spec.sha256[:12]}, not the built-in "
            f"{base!r} ({bases[base].sha256[:12]}); export it again on the built-in base."
        )
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{spec.name}.gguf"
    shutil.copyfile(spec.adapter, target)
    lineage = {k: v for k, v in spec.lineage.items() if k not in LOCAL_KEYS}
    if evals:
        lineage["evals"] = evals
    entry = ShippedAdapter(
        name=spec.name,
        description=description or f"{spec.description} (shipped adapter)",
        base=base,
        adapter_file=target.name,
        sha256=sha256_file(target),
        size=target.stat().st_size,
        lineage=lineage,
    )
    manifest = directory / f"{spec.name}.json"
    manifest.write_text(json.dumps(entry.model_dump(), indent=2) + "\n", encoding="utf-8")
    return entry
