"""Training precision: bf16 where the hardware computes it natively (on a CPU too), else fp32."""

from __future__ import annotations

from pathlib import Path

import pytest

import agent.cpu
from trainer.train import rundir
from trainer.train.config import TrainConfig
from trainer.train.loop import _use_bf16, precision_change, resumed_config

torch = pytest.importorskip("torch")


@pytest.fixture
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return monkeypatch


def cfg(tmp_path: Path, bf16: bool | None) -> TrainConfig:
    return TrainConfig(method="sft", data_dir=tmp_path, bf16=bf16)


def test_a_cpu_with_bf16_instructions_trains_in_bf16(cpu_only, tmp_path: Path) -> None:
    cpu_only.setattr(agent.cpu, "cpu_has_bf16", lambda: True)
    assert _use_bf16(cfg(tmp_path, None)) is True
    assert _use_bf16(cfg(tmp_path, False)) is False  # --no-bf16 wins


def test_a_cpu_without_them_trains_in_fp32_and_refuses_bf16(cpu_only, tmp_path: Path) -> None:
    cpu_only.setattr(agent.cpu, "cpu_has_bf16", lambda: False)
    assert _use_bf16(cfg(tmp_path, None)) is False
    with pytest.raises(ValueError, match=r"this CPU has no native bf16.*drop the flag"):
        _use_bf16(cfg(tmp_path, True))


def test_a_run_begun_in_fp32_resumes_in_fp32(tmp_path: Path) -> None:
    """Runs started before CPUs trained in bf16 recorded `"bf16": false` beside a config that
    left the choice open; resumed on a bf16 CPU they must not switch precision mid-run."""
    for decided, resumed in ((False, False), (True, None)):
        run = tmp_path / f"run-{decided}"
        run.mkdir()
        config = cfg(tmp_path, None).model_dump(mode="json")
        rundir.write_json(run / rundir.CONFIG, {"config": config, "bf16": decided})
        assert resumed_config(rundir.read_json(run / rundir.CONFIG)).bf16 is resumed


def test_a_run_begun_in_bf16_warns_when_it_resumes_in_fp32() -> None:
    """The reverse case cannot keep bf16 where the CPU lacks it; it must say so."""
    warning = precision_change("20261207-131003-kto", True, False)
    assert warning is not None
    assert "20261207-131003-kto began in bf16 and resumes in fp32" in warning
    assert precision_change("run", True, True) is None
    assert precision_change("run", False, False) is None
    assert precision_change("run", None, False) is None  # runs from before the record
