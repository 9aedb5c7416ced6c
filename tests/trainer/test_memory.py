"""The activation-checkpointing default: from the model's size and the memory there is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.train.memory import GB, needs_checkpointing, step_memory

QWEN_VOCAB = 151_936


def _qwen(n_params: int, hidden: int, layers: int):
    return step_memory(
        n_params=n_params,
        hidden=hidden,
        layers=layers,
        vocab=QWEN_VOCAB,
        rows=4,
        tokens=1024,
        dtype_bytes=4,
    )


def test_the_estimate_matches_what_this_machine_measured() -> None:
    """On 23 GB: the 1.5B's fp32 SFT at 4 x 1,024 was killed at 24 GB RSS; the 0.5B's ran."""
    machine = 23 * GB
    small, large = _qwen(494_032_768, 896, 24), _qwen(1_543_714_304, 1536, 28)
    assert needs_checkpointing(large, machine)
    assert not needs_checkpointing(small, machine)
    assert 20 * GB < large.total < 30 * GB and small.total < 18 * GB
    assert not needs_checkpointing(large, None)  # no estimate of what is free: no change


def test_a_run_checkpoints_when_a_step_would_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decision is made on the loaded model and recorded, so a resumed run keeps it."""
    pytest.importorskip("trl")
    from tests.trainer.test_train import _cfg, _train
    from tests.trainer.tiny import shared_tiny

    tiny = shared_tiny(tmp_path / "tiny")
    import trainer.train.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda: 1024**2)  # a 1 MiB machine
    result = _train(_cfg(tiny, tmp_path, "sft", max_steps=1), tmp_path)
    config = json.loads((result.run_dir / "config.json").read_text())["config"]
    assert config["gradient_checkpointing"] is True

    monkeypatch.setattr(memory, "available_memory", lambda: 1024**4)
    result = _train(_cfg(tiny, tmp_path / "roomy", "sft", max_steps=1), tmp_path / "roomy")
    config = json.loads((result.run_dir / "config.json").read_text())["config"]
    assert config["gradient_checkpointing"] is False
