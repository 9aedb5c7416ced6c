"""`fixloop train/export/gate/retrain`: wiring and clear errors (no model is loaded here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fixloop.cli import app

runner = CliRunner()


def test_commands_are_registered_and_help_needs_no_torch() -> None:
    code = (
        "import sys; from fixloop.cli import app; import fixloop.cli.train_cmd; "
        "import trainer.gate, trainer.retrain, trainer.export.pipeline; "
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'llama_cpp') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    result = runner.invoke(app, ["--help"])
    for command in ("train", "export", "gate", "retrain"):
        assert command in result.output


def test_bad_options_fail_with_the_fix(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--method", "ppo"])
    assert result.exit_code == 2 and "not one of sft, leti, ilf, dpo, kto" in result.output
    result = runner.invoke(app, ["train", "--method", "dpo", "--data", str(tmp_path)])
    assert result.exit_code == 2 and "no dpo.jsonl" in result.output
    assert "fixloop data build" in result.output
    result = runner.invoke(app, ["export", str(tmp_path)])
    assert result.exit_code == 2 and "finished `fixloop train` run" in result.output
    result = runner.invoke(app, ["export", str(tmp_path), "--quant", "Q2_K"])
    assert result.exit_code == 2 and "choose one of Q4_K_M, Q8_0" in result.output
    result = runner.invoke(app, ["gate", "no-such-version", "--limit", "1"])
    assert result.exit_code == 2 and "unknown model 'no-such-version'" in result.output


def test_train_and_retrain_map_their_options_onto_the_same_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    import fixloop.cli.train_cmd as cmd

    seen: list[object] = []

    def capture(opts: dict[str, object]) -> object:
        cfg = original(opts)
        seen.append(cfg)
        raise typer.Exit(0)  # stop before any model is loaded

    original = cmd._train_config
    monkeypatch.setattr(cmd, "_train_config", capture)
    args = ["--method", "sft", "--base", "smollm2-135m", "--data", str(tmp_path)]
    args += ["--lr", "0.001", "--max-steps", "7", "--batch-size", "3", "--grad-accum", "2"]
    args += ["--max-len", "256", "--lora-r", "4", "--limit", "9", "--seed", "5", "--full"]
    args += ["--save-every", "11", "--gradient-checkpointing", "--out", str(tmp_path / "r")]
    for command in ("train", "retrain"):
        assert runner.invoke(app, [command, *args]).exit_code == 0
    a, b = seen
    assert a == b
    assert (a.method, a.lr, a.max_steps, a.batch_size, a.grad_accum) == ("sft", 1e-3, 7, 3, 2)
    assert (a.max_len, a.lora_r, a.lora_alpha, a.limit, a.seed) == (256, 4, 8, 9, 5)
    assert (a.lora, a.save_every, a.gradient_checkpointing) == (False, 11, True)
    assert (a.base, a.data_dir, a.out_dir) == ("smollm2-135m", tmp_path, tmp_path / "r")


def test_every_training_option_is_declared_once_for_both_commands(tmp_path: Path) -> None:
    import typer

    from trainer.train.config import TrainConfig, cli_options

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]

    def flags(name: str) -> set[str]:
        return {f for p in commands[name].params for f in (*p.opts, *p.secondary_opts)}

    declared = {f for _, flag, *_ in cli_options() for f in flag.split("/")}
    assert len(declared) > 16  # the old 16 shared options, and the rest of TrainConfig
    assert flags("train") - declared == {"--resume"}
    assert declared <= flags("retrain")
    fields = {name for name, *_ in cli_options()}
    assert fields == set(TrainConfig.model_fields) - {"target_modules", "split"}
    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--lr", "-1"])
    assert result.exit_code == 2 and "invalid training option --lr" in result.output


def test_retrain_passes_its_seed_and_resume_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    import trainer.retrain as rt

    seen: dict[str, object] = {}

    def fake(settings: object, cfg: object, **kwargs: object) -> SimpleNamespace:
        seen.update(kwargs, cfg=cfg)
        md = tmp_path / "retrain.md"
        md.write_text("# Retrain: x\n", encoding="utf-8")
        return SimpleNamespace(report_md=md, report_png=tmp_path / "p.png", directory=tmp_path)

    monkeypatch.setattr(rt, "retrain", fake)
    args = ["retrain", "--method", "sft", "--data", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    plan = seen["seed"]
    assert plan == rt.SeedPlan()  # retrain's defaults: 1 sample (the round: 4), no teacher
    assert (plan.min_rows, plan.samples, plan.limit) == (rt.DEFAULT_MIN_ROWS, None, None)  # type: ignore[attr-defined]
    assert seen["gate"] == rt.GatePlan(workers=2)
    assert seen["fresh"] is False and f"state:  {tmp_path}" in result.output
    prefs = ["--method", "dpo", "--preferences", "--pref-tasks", "sessions", "--min-pairs", "3"]
    assert runner.invoke(app, [*args, *prefs]).exit_code == 0
    assert seen["cfg"].preferences and seen["cfg"].method == "dpo"  # type: ignore[attr-defined]
    assert (seen["seed"].pref_tasks, seen["seed"].min_pairs) == ("sessions", 3)  # type: ignore[attr-defined]
    result = runner.invoke(app, [*args, "--preferences"])  # --method sft
    assert result.exit_code == 2 and "--preferences trains DPO" in result.output
    assert "--method dpo" in result.output
    more = ["--min-rows", "7", "--seed-samples", "2", "--seed-limit", "5", "--fresh"]
    assert runner.invoke(app, [*args, *more, "--teacher", "big"]).exit_code == 0
    assert seen["seed"] == rt.SeedPlan(min_rows=7, samples=2, limit=5, teacher="big")
    assert seen["fresh"] is True


def test_train_and_retrain_default_to_sft() -> None:
    """LeTI was the default; on 2 cores it trains for hours and exports merged, and it did not
    beat the base (docs/BENCHMARKS.md), so the default is the cheapest recipe that tied."""
    from trainer.train.config import TrainConfig

    assert TrainConfig.model_fields["method"].default == "sft"
    for command in ("train", "retrain"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert "[default: sft]" in result.output


def test_dpo_kto_and_leti_checkpoint_activations_unless_told_not_to(tmp_path: Path) -> None:
    """DPO, and LeTI's batch of its 4 longest rows, on the 0.5B were killed for memory at
    24 GB RSS without checkpointing."""
    from trainer.train.config import TrainConfig

    def resolved(**kw: Any) -> bool | None:
        return TrainConfig(data_dir=tmp_path, **kw).gradient_checkpointing

    assert resolved(method="dpo") is True and resolved(method="kto") is True
    assert resolved(method="leti") is True
    # SFT and ILF: decided from the loaded model's size (trainer.train.memory)
    assert resolved(method="sft") is None and resolved(method="ilf") is None
    assert resolved(method="dpo", gradient_checkpointing=False) is False
    assert resolved(method="sft", gradient_checkpointing=True) is True
