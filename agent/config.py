"""Effective configuration: defaults < config file < environment (FIXLOOP_*) < flags.

`load_settings` returns the settings and, for each field, which layer set it, so
that `fixloop config show` can say where every value came from.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from agent import paths
from agent.errors import FixloopError
from agent.textfile import NotTextError, read_text

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_sessions_dir() -> Path:
    """The checkout's `sessions/` for a source install, else the data dir's."""
    here = PROJECT_ROOT / "sessions"
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return here
    return paths.default_data_dir() / "sessions"


# The repair loop's policies (agent/policies.py): what follows a failed attempt.
PolicyName = Literal[
    "greedy", "sampled", "restart", "mixed", "adaptive", "fresh", "resample", "targeted"
]
POLICY_NAMES: tuple[str, ...] = get_args(PolicyName)


class ConfigError(FixloopError, ValueError):
    """A config file or environment value that cannot be used; the message says how to fix it."""


class Settings(BaseSettings):
    """Every knob fixloop has. Field docs double as `fixloop config show` help."""

    model_config = SettingsConfigDict(env_prefix="FIXLOOP_", extra="forbid", frozen=True)

    model: str = Field("qwen2.5-coder-1.5b", description="registered model name or version")
    base_url: str | None = Field(
        None,
        description="OpenAI-compatible endpoint (several: comma-separated); overrides model",
    )
    api_key: SecretStr | None = Field(None, description="bearer token for base_url")
    adapter: Path | None = Field(None, description="LoRA adapter (GGUF) applied at load time")
    cache_dir: Path = Field(default_factory=paths.default_cache_dir)
    data_dir: Path = Field(default_factory=paths.default_data_dir)
    sessions_dir: Path = Field(default_factory=_default_sessions_dir)
    n_ctx: int = Field(4096, ge=256, description="context window in tokens")
    n_threads: int | None = Field(
        None, ge=1, description="llama.cpp threads (default: the cores not busy at load time)"
    )
    n_gpu_layers: int = Field(0, description="layers offloaded to a GPU (-1: all)")
    llama_repack: bool | None = Field(
        None,
        description="llama.cpp weight repacking into AMX/CPU_REPACK buffers (default: on, "
        "except on AMX CPUs, where its kernels segfault: llama.cpp #20824)",
    )
    max_turns: int = Field(4, ge=1, le=50, description="attempts per episode")
    policy: PolicyName = Field(
        "resample",
        description="after a failed attempt (default resample: the best measured; "
        "docs/BENCHMARKS.md): greedy (repair), sampled (repair at T 0.8), "
        "restart (from the task when no better), mixed (repair if tests pass, else restart), "
        "adaptive (mixed; a repair that did not improve starts over), "
        "fresh (adaptive; a restart is the task alone, no note), "
        "resample (never repair: a new sample of the task after every failure), "
        "targeted (resample; repair a crash at a line of the program)",
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(1024, ge=16)
    prompt_cache: bool = Field(
        True,
        description="reuse the evaluated prompt prefix between calls (llama.cpp KV cache; "
        "cache_prompt on a server); off only to measure what it saves",
    )
    seed: int = 0
    # The upper bounds are SandboxLimits' (MAX_TIMEOUT_S, MAX_MEMORY_MB in agent.sandbox.limits).
    exec_timeout: float = Field(
        10.0, gt=0, le=86400, allow_inf_nan=False, description="seconds per program or test"
    )
    memory_mb: int = Field(
        1024, ge=64, le=2**24, description="address-space limit per program (MB)"
    )
    theme: str = Field("textual-dark", description="TUI theme")
    preferences: bool = Field(
        True, description="check attempts against the active preferences (fixloop prefs)"
    )
    preference_timeout: float = Field(
        10.0, gt=0, le=600, description="seconds a preference's verifier may take per attempt"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Files are merged by load_settings (so it can attribute values); here
        # only flags (init) and the environment.
        return (init_settings, env_settings)


def read_config_file(path: Path, *, required: bool = False) -> dict[str, Any]:
    """The `[fixloop]` table (or the top level) of a TOML config file.

    A file that is absent gives {} unless `required` (one the user named).
    """
    if not path.exists():
        if required:
            raise ConfigError(
                f"config file {path} not found: check the --config path, or leave --config "
                f"out to use {paths.config_file()}"
            )
        return {}
    if path.is_dir():
        raise ConfigError(
            f"{path} is a directory, not a config file: give a TOML file (or remove the directory)"
        )
    try:
        text = read_text(path, f"config file {path}")
    except NotTextError as exc:
        raise ConfigError(str(exc)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}). Fix or delete the file.") from exc
    table = data.get("fixloop", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: `fixloop` must be a table ([fixloop]), not a value")
    unknown = sorted(set(table) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)}. "
            f"Known: {', '.join(Settings.model_fields)}."
        )
    return dict(table)


def _env_values() -> dict[str, Any]:
    source = EnvSettingsSource(Settings, env_prefix="FIXLOOP_")
    return {k: v for k, v in source().items() if k in Settings.model_fields}


def load_settings(
    overrides: dict[str, Any] | None = None, config_path: Path | None = None
) -> tuple[Settings, dict[str, str]]:
    """Build the effective settings and a field -> source map.

    Sources, lowest first: "default", "file:<path>", "env:FIXLOOP_<NAME>", "flag".
    """
    path = config_path or paths.config_file()
    file_values = read_config_file(path, required=config_path is not None)
    env_values = _env_values()
    flag_values = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged: dict[str, Any] = {**file_values, **env_values, **flag_values}
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(
            f"invalid configuration ({problems}). Check flags, FIXLOOP_* variables and {path}."
        ) from exc
    if "model" not in merged:
        from agent.models.registry import Registry

        active = Registry(settings.data_dir).active()
        if active:
            settings = settings.model_copy(update={"model": active})
            merged["model"] = active
    origin: dict[str, str] = {}
    for name in Settings.model_fields:
        if name in flag_values:
            origin[name] = "flag"
        elif name == "model" and name in merged and name not in env_values | file_values:
            origin[name] = "registry (fixloop models use)"
        elif name in env_values:
            origin[name] = f"env:FIXLOOP_{name.upper()}"
        elif name in file_values:
            origin[name] = f"file:{path}"
        else:
            origin[name] = "default"
    return settings, origin
