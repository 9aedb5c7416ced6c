"""Where fixloop keeps things on disk (XDG base directories, each overridable)."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def config_dir() -> Path:
    """`$FIXLOOP_CONFIG_DIR`, else `$XDG_CONFIG_HOME/fixloop`."""
    override = os.environ.get("FIXLOOP_CONFIG_DIR")
    return Path(override) if override else _xdg("XDG_CONFIG_HOME", ".config") / "fixloop"


def config_file() -> Path:
    return config_dir() / "config.toml"


def default_cache_dir() -> Path:
    """Assembled model files: `$XDG_CACHE_HOME/fixloop` unless configured otherwise."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "fixloop"


def default_data_dir() -> Path:
    """The user's model registry and trained versions: `$XDG_DATA_HOME/fixloop`."""
    return _xdg("XDG_DATA_HOME", ".local/share") / "fixloop"
