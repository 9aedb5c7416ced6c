"""Two training processes, one run (issue 14, item 4): DDP on CPU over gloo.

`accelerate launch` starts GPU processes through torch's elastic launcher (torchrun); on CPU
the test starts two processes with it directly (accelerate's CPU launcher needs MPI). The
Trainer sees WORLD_SIZE=2, joins a gloo process group, and splits each batch between the
processes; the main process alone writes the run directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.tiny import shared_tiny
from trainer.train import rundir

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # two processes each load torch, transformers and TRL: ~30 s on 2 cores
def test_two_cpu_processes_train_one_run(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("two training processes need at least 2 CPU cores")
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("this torch build has no gloo backend for CPU process groups")
    base, data = shared_tiny(tmp_path_factory.getbasetemp())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    cmd += ["-m", "fixloop", "train", "--method", "sft", "--base", str(base), "--data", str(data)]
    cmd += ["--out", str(tmp_path / "runs"), "--max-steps", "2", "--batch-size", "2"]
    cmd += ["--lr", "0.03", "--lora-r", "8", "--max-len", "128", "--warmup-ratio", "0"]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # one core per process
        "CUDA_VISIBLE_DEVICES": "",  # CPU processes even on a GPU machine
        "FIXLOOP_DATA_DIR": str(tmp_path / "data"),
        "FIXLOOP_CACHE_DIR": str(tmp_path / "cache"),
    }
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
    assert out.returncode == 0, out.stderr[-4000:]
    [run] = list((tmp_path / "runs").iterdir())  # both processes trained one run
    assert out.stdout.count("run: ") == 1  # reported once, by the main process
    meta = json.loads((run / rundir.CONFIG).read_text())
    assert meta["processes"] == 2 and meta["device"].startswith("cpu")
    history = rundir.read_history(run)
    assert [h["step"] for h in history] == [1, 2]
    # Batch 2 per process: each step is one epoch of the 4-row toy SFT set, and the tokens
    # of both processes are counted (the same rows each step).
    assert json.loads((run / rundir.DATA).read_text())["examples"] == 4
    assert [h["epoch"] for h in history] == [1.0, 2.0]
    assert history[0]["tokens"] == history[1]["tokens"] > 0
    assert (run / rundir.ADAPTER / "adapter_model.safetensors").is_file()
    assert json.loads((run / rundir.METRICS).read_text())["steps"] == 2
