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
        load_settings({})


def test_promoted_model_is_the_default_unless_overridden(tmp_path: Path) -> None:
    from agent.models import Registry

    settings, _ = load_settings({})
    Registry(settings.data_dir).set_active("qwen2.5-coder-0.5b")
    settings, origin = load_settings({})
    assert settings.model == "qwen2.5-coder-0.5b" and origin["model"].startswith("registry")
    settings, origin = load_settings({"model": "smollm2-135m"})
    assert settings.model == "smollm2-135m" and origin["model"] == "flag"


def test_config_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"c\.toml is not UTF-8 text .*save it as UTF-8"):
        bad = tmp_path / "c.toml"
        bad.write_bytes(b'model = "caf\xe9"\n')
        load_settings({}, bad)
    with pytest.raises(ConfigError, match=r"is a directory, not a config file"):
        load_settings({}, tmp_path)


def test_explicit_config_must_exist_default_need_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml not found"):
        load_settings({}, tmp_path / "missing.toml")
    monkeypatch.setenv("FIXLOOP_CONFIG_DIR", str(tmp_path / "absent"))
    assert load_settings({})[1]["max_turns"] == "default"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXEC_TIMEOUT", "inf"),
        ("EXEC_TIMEOUT", "nan"),
        ("EXEC_TIMEOUT", "1e300"),
        ("MEMORY_MB", str(2**70)),
    ],
)
def test_sandbox_limits_are_bounded(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"FIXLOOP_{name}", value)
    with pytest.raises(ConfigError, match=name.lower()):
        load_settings({})


def test_settings_bounds_match_the_sandbox() -> None:
    from agent.config import Settings
    from agent.sandbox.limits import MAX_MEMORY_MB, MAX_TIMEOUT_S, SandboxLimits

    top = Settings(exec_timeout=MAX_TIMEOUT_S, memory_mb=MAX_MEMORY_MB)
    SandboxLimits(timeout_s=top.exec_timeout, memory_mb=top.memory_mb)  # accepted by both
