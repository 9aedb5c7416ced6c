"""`fixloop train/export/gate/retrain`: wiring and clear errors (no model is loaded here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
