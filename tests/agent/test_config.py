"""Configuration precedence: defaults < file < environment < flags, with provenance."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_settings


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_precedence_and_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(tmp_path / "c.toml", 'max_turns = 6\ntemperature = 0.3\nmodel = "from-file"\n')
    monkeypatch.setenv("FIXLOOP_TEMPERATURE", "0.7")
    monkeypatch.setenv("FIXLOOP_MODEL", "from-env")
    settings, origin = load_settings({"model": "from-flag"}, cfg)
    assert settings.model == "from-flag" and origin["model"] == "flag"
    assert settings.temperature == 0.7 and origin["temperature"] == "env:FIXLOOP_TEMPERATURE"
    assert settings.max_turns == 6 and origin["max_turns"] == f"file:{cfg}"
    assert settings.n_ctx == 4096 and origin["n_ctx"] == "default"


def test_fixloop_table_is_accepted(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "c.toml", "[fixloop]\nmax_turns = 2\n")
    assert load_settings({}, cfg)[0].max_turns == 2


def test_unknown_key_names_the_known_ones(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "c.toml", "max_turn = 2\n")
    with pytest.raises(ConfigError, match=r"unknown setting.*max_turn.*Known:.*max_turns"):
        load_settings({}, cfg)


def test_bad_toml_and_bad_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, _write(tmp_path / "a.toml", "max_turns = = 2"))
    monkeypatch.setenv("FIXLOOP_MAX_TURNS", "zero")
    with pytest.raises(ConfigError, match="max_turns"):
        load_settings({}, tmp_path / "missing.toml")


def test_promoted_model_is_the_default_unless_overridden(tmp_path: Path) -> None:
    from agent.models import Registry

    settings, _ = load_settings({}, tmp_path / "none.toml")
    Registry(settings.data_dir).set_active("qwen2.5-coder-0.5b")
    settings, origin = load_settings({}, tmp_path / "none.toml")
    assert settings.model == "qwen2.5-coder-0.5b" and origin["model"].startswith("registry")
    settings, origin = load_settings({"model": "smollm2-135m"}, tmp_path / "none.toml")
    assert settings.model == "smollm2-135m" and origin["model"] == "flag"
