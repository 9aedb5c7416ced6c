"""`fixloop export RUN_DIR`: merge (or keep the LoRA), convert, quantize, check, register.

Merged export: base + adapter -> HF dir -> f16 GGUF -> Q4_K_M (or Q8_0) GGUF, checked by
loading it in llama-cpp-python and generating, then registered as a new model version
(kind "trained") with its lineage. LoRA-only export: the adapter alone -> a small f16
GGUF LoRA, registered as the base's GGUF plus that adapter (applied at load time).
Files land in `<data_dir>/models/<version>/`; an `export.json` is written to the run dir.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from agent.errors import FixloopError
from agent.models import ModelSpec, Registry
from agent.models.provision import hash_file
from trainer.data.formats import GOOD
from trainer.export.check import GenerationCheck, check_generates
from trainer.export.converter import ensure_converter
from trainer.export.merge import base_config_dir, merged_hf_dir, run_meta
from trainer.export.quantize import DEFAULT_QUANT, check_quant, quantize
from trainer.train import rundir
from trainer.train.data import manifest_info


class ExportError(FixloopError, RuntimeError):
    """An export that cannot proceed; the message says what to do instead."""


@dataclass(frozen=True)
class ExportResult:
    spec: ModelSpec
    gguf: Path  # the model file llama.cpp loads (the base's for LoRA-only)
    adapter: Path | None
    check: GenerationCheck | None

    @property
    def name(self) -> str:
        return self.spec.name


def version_name(run_dir: Path, meta: dict[str, Any]) -> str:
    """E.g. `qwen2.5-coder-1.5b-leti-20261121-131500`: base, method, the run's timestamp."""
    base = Path(meta["base"]["name"]).name.removesuffix(".gguf")
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-") or "model"
    # the run's stamp, and the -N that tells apart two runs started in the same second
    stamp = re.match(r"(\d{8}-\d{6})-.*?(-\d+)?$", run_dir.name)
    suffix = stamp.group(1) + (stamp.group(2) or "") if stamp else time.strftime("%Y%m%d-%H%M%S")
    return f"{base}-{meta['config']['method']}-{suffix}"


def lineage(run_dir: Path, meta: dict[str, Any], *, quant: str, mode: str) -> dict[str, Any]:
    data = rundir.read_json(run_dir / rundir.DATA)
    manifest_sha = None
    if "data_dir" in data:  # an RLEF run trains on tasks (`suite`), not a built dataset
        _manifest, manifest_sha = manifest_info(Path(data["data_dir"]))
    return {
        "base": meta["base"]["name"],
        "base_path": meta["base"]["path"],
        "base_sha256": meta["base"].get("sha256"),
        "method": meta["config"]["method"],
        "lora": meta["config"]["lora"],
        "data_manifest": data.get("manifest"),
        "data_manifest_sha256": data.get("manifest_sha256"),
        "data_manifest_changed_since": bool(
            manifest_sha and data.get("manifest_sha256") and manifest_sha != data["manifest_sha256"]
        ),
        "dataset_file": data.get("dataset_file"),
        "dataset_sha256": data.get("dataset_sha256"),
        "tasks_suite": data.get("suite"),  # RLEF
        "tasks_sha256": data.get("tasks_sha256"),
        "metrics": rundir.read_json(run_dir / rundir.METRICS),
        "run_dir": str(run_dir.resolve()),
        "export": mode,
        "quant": quant,
        # LeTI trains on `<|good|>{task}{program}`: prompts should start with the good token.
        "inference_prefix": GOOD if meta["config"]["method"] == "leti" else None,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def export_run(
    run_dir: Path,
    *,
    cache_dir: Path,
    data_dir: Path,
    quant: str = DEFAULT_QUANT,
    lora_only: bool = False,
    name: str | None = None,
    check: bool = True,
    keep_intermediate: bool = False,
    progress: bool = True,
) -> ExportResult:
    """Export a finished run and register it (inactive: the gate decides promotion)."""
    quant = check_quant(quant)
    run_dir = run_dir.resolve()
    meta = run_meta(run_dir)
    name = name or version_name(run_dir, meta)
    registry = Registry(data_dir)
    if name in registry.all():
        raise ExportError(f"a model named {name!r} is already registered; pass --name.")
    if lora_only:
        if meta.get("leti_token_ids") or not meta["config"]["lora"]:
            raise ExportError(
                "this run changed the vocabulary or trained all weights, which a GGUF LoRA "
                "cannot carry; export it merged (drop --lora-only)."
            )
        if meta["base"]["kind"] != "gguf":
            raise ExportError(
                "--lora-only needs a GGUF base to apply the adapter to; this run's base is "
                f"the HF directory {meta['base']['path']}. Export merged instead."
            )
    out_dir = data_dir / "models" / name
    work = run_dir / "export"
    work.mkdir(parents=True, exist_ok=True)
    stages = ["converter", "convert", "check", "register"]
    stages.insert(1, "config" if lora_only else "merge")
    if not lora_only:
        stages.insert(3, "quantize")
    bar = tqdm(
        total=len(stages),
        desc=f"export {name}",
        unit="stage",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )

    def stage(label: str) -> None:
        bar.set_postfix_str(label)

    try:
        stage("fetching llama.cpp converter")
        converter = ensure_converter(cache_dir)
        bar.update(1)
        out_dir.mkdir(parents=True, exist_ok=True)
        adapter: Path | None = None
        if lora_only:
            stage("base config")
            cfg_dir = base_config_dir(run_dir, work / "base-config")
            bar.update(1)
            stage("convert adapter")
            adapter = out_dir / f"{name}-lora-f16.gguf"
            converter.run(
                converter.lora_script,
                [
                    "--base",
                    str(cfg_dir),
                    "--outfile",
                    str(adapter),
                    "--outtype",
                    "f16",
                    str(run_dir / rundir.ADAPTER),
                ],
            )
            gguf = Path(meta["base"]["path"])
            bar.update(1)
        else:
            stage("merge adapter")
            hf_dir = merged_hf_dir(run_dir, work / "merged-hf")
            bar.update(1)
            stage("convert to f16 GGUF")
            f16 = work / f"{name}-f16.gguf"
            converter.run(
                converter.hf_script,
                [str(hf_dir), "--outfile", str(f16), "--outtype", "f16"],
            )
            bar.update(1)
            stage(f"quantize {quant}")
            gguf = quantize(f16, out_dir / f"{name}-{quant}.gguf", quant)
            bar.update(1)
            if not keep_intermediate:
                shutil.rmtree(hf_dir, ignore_errors=True)
                f16.unlink(missing_ok=True)
        stage("load and generate")
        result_check = check_generates(gguf, lora_path=adapter) if check else None
        bar.update(1)
        stage("register")
        spec = _register(
            registry,
            name,
            gguf,
            adapter,
            meta,
            run_dir,
            quant="f16-lora" if lora_only else quant,
            mode="lora" if lora_only else "merged",
        )
        bar.update(1)
    finally:
        bar.close()
    rundir.write_json(
        run_dir / "export.json",
        {
            "name": name,
            "gguf": str(gguf),
            "adapter": str(adapter) if adapter else None,
            "check": result_check.as_dict() if result_check else None,
            "registry": str(registry.path),
        },
    )
    return ExportResult(spec, gguf, adapter, result_check)


def _register(
    registry: Registry,
    name: str,
    gguf: Path,
    adapter: Path | None,
    meta: dict[str, Any],
    run_dir: Path,
    *,
    quant: str,
    mode: str,
) -> ModelSpec:
    sha, size = hash_file(gguf)
    base_name = meta["base"]["name"]
    n_ctx = 4096
    if base_name in registry.all():
        n_ctx = registry.get(base_name).n_ctx
    spec = ModelSpec(
        name=name,
        description=f"{meta['config']['method']} fine-tune of {base_name} ({quant})",
        filename=gguf.name,
        sha256=sha,
        size=size,
        n_ctx=n_ctx,
        license=registry.get(base_name).license if base_name in registry.all() else "unknown",
        path=gguf.resolve(),
        kind="trained",
        lineage=lineage(run_dir, meta, quant=quant, mode=mode),
        adapter=adapter.resolve() if adapter else None,
    )
    if adapter is not None:
        spec.adapter_sha256, spec.adapter_size = hash_file(adapter)
    return registry.add(spec)
