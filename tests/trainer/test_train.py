"""Fine-tuning on CPU: a tiny random Llama with the real SmolLM2 tokenizer, every method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.trainer.tiny import shared_tiny
from trainer.train import rundir
from trainer.train.config import LETI_TOKENS, METHODS, TrainConfig
from trainer.train.data import DataError, load_examples

pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")
pytest.importorskip("trl")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return shared_tiny(tmp_path_factory.getbasetemp())


def _cfg(tiny: tuple[Path, Path], tmp_path: Path, method: str, **kw: object) -> TrainConfig:
    base, data = tiny
    opts: dict[str, object] = {
        "method": method,
        "base": str(base),
        "data_dir": data,
        "out_dir": tmp_path / "runs",
        "lr": 3e-2,
        "batch_size": 4,
        "max_steps": 6,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "warmup_ratio": 0.0,
        "max_len": 128,
        "save_every": 3,
        "beta": 0.5,
    }
    opts.update(kw)
    return TrainConfig.model_validate(opts)


def _train(cfg: TrainConfig, tmp_path: Path, **kw: object):
    from trainer.train.loop import run_training

    return run_training(
        cfg, cache_dir=tmp_path / "cache", registry_dir=tmp_path / "data", progress=False, **kw
    )


@pytest.mark.slow  # seconds per method on 2 cores
@pytest.mark.parametrize("method", [m for m in METHODS if m != "rlef"])  # rlef: test_rlef.py
def test_each_method_trains_and_the_loss_falls(
    method: str, tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    steps = 4 if method == "dpo" else 6  # DPO's margin grows fast; the LM losses need 6
    result = _train(_cfg(tiny, tmp_path, method, max_steps=steps), tmp_path)
    m = result.metrics
    assert m["steps"] == steps
    # Full-batch steps on a fixed toy set: the loss moves only if the model learns.
    # LM losses start near ln(49152) ~ 10.8 for a random model and fall slowly with LoRA;
    # DPO starts at ln 2 and falls fast; KTO starts at 0.5 and falls less steadily, since
    # its reference point (the batch's KL estimate) moves with the policy.
    if method == "dpo":
        assert m["final_loss"] < 0.8 * m["first_loss"], (m["first_loss"], m["final_loss"])
    elif method == "kto":
        assert m["final_loss"] < 0.9 * m["first_loss"], (m["first_loss"], m["final_loss"])
        assert m["min_loss"] < 0.8 * m["first_loss"], (m["first_loss"], m["min_loss"])
    else:
        assert m["final_loss"] < m["first_loss"] - 0.2, (m["first_loss"], m["final_loss"])
    # The toy set's validation row repeats a training row: its loss falls too, except KTO's,
    # whose one-row KL reference point makes the loss constant (0.5).
    assert m["val_examples"] == 1
    if method != "kto":
        assert m["val_loss_after"] < m["val_loss_before"]
    run = result.run_dir
    assert run.parent == tmp_path / "runs" and run.name.endswith(f"-{method}")
    for name in (rundir.CONFIG, rundir.DATA, rundir.METRICS, rundir.LOSS_PNG, rundir.HISTORY):
        assert (run / name).is_file(), name
    assert (run / rundir.ADAPTER / "adapter_config.json").is_file()
    assert (run / rundir.LOSS_PNG).read_bytes()[:4] == b"\x89PNG"
    data = json.loads((run / rundir.DATA).read_text())
    manifest = tiny[1] / "manifest.json"
    import hashlib

    assert data["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    history = rundir.read_history(run)
    assert [h["step"] for h in history] == list(range(1, steps + 1))
    assert all(h["tokens_per_s"] and h["tokens_per_s"] > 0 for h in history)
    if method == "dpo":
        assert m["reward_acc"] == 1.0
    if method == "leti":
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(run / rundir.TOKENIZER)
        ids = [tok.convert_tokens_to_ids(t) for t in LETI_TOKENS]
        assert len(set(ids)) == 4 and all(i >= 49152 for i in ids)
        # One token each, never split into pieces.
        assert tok("<|good|>x", add_special_tokens=False)["input_ids"][0] == ids[0]
        # Their embedding rows are in the adapter (peft's trainable tokens), not the matrix.
        from safetensors.torch import load_file

        weights = load_file(run / rundir.ADAPTER / "adapter_model.safetensors")
        deltas = [v for k, v in weights.items() if "trainable_tokens_delta" in k]
        assert len(deltas) == 1 and deltas[0].shape[0] == len(LETI_TOKENS)
        assert not any(k.endswith("embed_tokens.weight") for k in weights)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "extra"), [("dpo", {"lora": False}), ("kto", {"gradient_checkpointing": True})]
)
def test_full_weights_and_gradient_checkpointing(
    method: str, extra: dict[str, object], tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    """--full trains every weight against a frozen copy of the base; checkpointing works
    (and TRL's calls of transformers' deprecated checkpointing names stay quiet)."""
    result = _train(_cfg(tiny, tmp_path, method, max_steps=2, **extra), tmp_path)
    m = result.metrics
    assert m["steps"] == 2 and m["final_loss"] < m["first_loss"]
    if extra.get("lora") is False:
        assert m["trainable_params"] == m["total_params"]
        assert (result.run_dir / rundir.FULL_MODEL / "config.json").is_file()


@pytest.mark.slow
def test_resume_continues_to_the_same_weights(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file

    # 4 examples, batch 2: two steps per epoch; the step-3 checkpoint is mid-epoch, and
    # LoRA dropout makes the weights depend on the restored RNG state.
    cfg = _cfg(tiny, tmp_path, "sft", max_steps=4, save_every=1, batch_size=2, lora_dropout=0.1)
    whole = _train(cfg, tmp_path)
    ckpts = sorted(p.name for p in (whole.run_dir / rundir.CHECKPOINTS).glob("checkpoint-*"))
    assert ckpts == ["checkpoint-3", "checkpoint-4"]  # the Trainer's, two kept
    # An interrupted copy: it got as far as the step-3 checkpoint.
    cut = tmp_path / "cut"
    shutil.copytree(whole.run_dir, cut)
    for p in (rundir.ADAPTER, rundir.METRICS, "checkpoints/checkpoint-4"):
        target = cut / p
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    assert rundir.latest_checkpoint(cut) == cut / "checkpoints" / "checkpoint-3"
    resumed = _train(None, tmp_path, resume=cut)  # type: ignore[arg-type]
    assert resumed.run_dir == cut
    history = rundir.read_history(cut)
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    assert [h["loss"] for h in history] == pytest.approx(
        [h["loss"] for h in rundir.read_history(whole.run_dir)], abs=1e-5
    )
    assert resumed.metrics["steps"] == 4 and resumed.metrics["tokens"] > 0
    assert (cut / "checkpoints" / "checkpoint-4").is_dir()
    a = load_file(whole.run_dir / rundir.ADAPTER / "adapter_model.safetensors")
    b = load_file(cut / rundir.ADAPTER / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max().item() < 1e-5, key


def _tiny_trainer(tiny: tuple[Path, Path], tmp_path: Path, method: str, rows: list, **kw: object):
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.train.modeling import BaseSource, load_tokenizer, peft_compat
    from trainer.train.trainers import build_trainer

    tok = load_tokenizer(BaseSource("tiny", "hf", tiny[0]))
    model = AutoModelForCausalLM.from_pretrained(tiny[0], dtype=torch.float32)
    with peft_compat():
        return build_trainer(
            _cfg(tiny, tmp_path, method, **kw), model, tok, rows, output_dir=tmp_path / "o"
        )


def test_loss_is_on_the_completion_tokens_only(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    rows = [
        {"prompt": "Write add.\n", "completion": "def add(a, b):\n    return a + b\n"},
        {"prompt": "x " * 100, "completion": "def f():\n    pass\n"},  # prompt > max_len
    ]
    trainer = _tiny_trainer(tiny, tmp_path, "ilf", rows, max_len=48)
    tok = trainer.processing_class
    assert len(trainer.train_dataset) == 1  # the row whose prompt fills max_len is left out
    enc = trainer.train_dataset[0]
    n_prompt = len(tok("Write add.\n")["input_ids"])
    assert enc["labels"][:n_prompt] == [-100] * n_prompt
    assert enc["labels"][n_prompt:] == enc["input_ids"][n_prompt:]
    assert enc["input_ids"][-1] == tok.eos_token_id
    # Conversations go through the chat template; only the assistant turn is scored.
    conv = [
        {
            "prompt": [{"role": "user", "content": "hi"}],
            "completion": [{"role": "assistant", "content": "hello"}],
        }
    ]
    trainer = _tiny_trainer(tiny, tmp_path, "sft", conv)
    labels = trainer.train_dataset[0]["labels"]
    scored = tok.decode([t for t in labels if t != -100])
    assert "hello" in scored and "hi" not in scored.replace("hello", "")


def test_training_takes_the_train_split_only(tiny: tuple[Path, Path]) -> None:
    _, data = tiny
    assert len(load_examples(data, "leti")) == 8
    assert len(load_examples(data, "leti", split=None)) == 9
    assert len(load_examples(data, "leti", split="validation")) == 1


def test_bad_data_is_refused_with_the_line(tmp_path: Path) -> None:
    (tmp_path / "dpo.jsonl").write_text('{"prompt": "p", "chosen": "c"}\n')
    with pytest.raises(DataError, match=r"dpo.jsonl:1: missing field 'rejected'"):
        load_examples(tmp_path, "dpo")
    with pytest.raises(DataError, match="Run `fixloop data build`"):
        load_examples(tmp_path, "kto")


def test_unknown_base_names_the_known_models(tmp_path: Path) -> None:
    from trainer.train.modeling import BaseModelError, resolve_base

    with pytest.raises(BaseModelError, match="unknown model 'nope'"):
        resolve_base("nope", cache_dir=tmp_path, data_dir=tmp_path)


@pytest.mark.slow
def test_rpo_alpha_adds_the_chosen_nll_to_dpo(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    """--rpo-alpha adds the chosen reply's NLL to the loss that is trained and evaluated: it
    starts near ln 2 + NLL (about 10.8 per token for the random tiny model), not at ln 2."""
    plain = _train(_cfg(tiny, tmp_path / "a", "dpo", max_steps=4), tmp_path / "a").metrics
    rpo = _train(_cfg(tiny, tmp_path / "b", "dpo", max_steps=4, rpo_alpha=1.0), tmp_path / "b")
    m = rpo.metrics
    assert plain["first_loss"] == pytest.approx(0.693, abs=0.01)
    assert m["first_loss"] > plain["first_loss"] + 5, (plain["first_loss"], m["first_loss"])
    assert m["val_loss_before"] > plain["val_loss_before"] + 5
    assert m["val_loss_after"] < m["val_loss_before"]
    assert "chosen_logp" in m and "logps/chosen" in rundir.read_history(rpo.run_dir)[-1]
    assert json.loads((rpo.run_dir / rundir.CONFIG).read_text())["config"]["rpo_alpha"] == 1.0


def test_rpo_alpha_is_refused_outside_dpo(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--rpo-alpha .* use --method dpo"):
        TrainConfig(method="sft", data_dir=tmp_path, rpo_alpha=1.0)


def test_a_preference_run_plots_the_chosen_and_rejected_likelihood(tmp_path: Path) -> None:
    """DPO's loss.png gets a second panel (chosen vs rejected log-likelihood); SFT's has one."""
    import struct

    sft = [{"step": i, "loss": 1.0 / i} for i in range(1, 5)]
    dpo = [dict(h, **{"logps/chosen": -20.0 + h["step"], "logps/rejected": -30.0}) for h in sft]
    rundir.plot_loss(sft, tmp_path / "sft.png", "sft")
    rundir.plot_loss(dpo, tmp_path / "dpo.png", "dpo")
    one, two = (
        struct.unpack(">II", (tmp_path / f"{n}.png").read_bytes()[16:24]) for n in ("sft", "dpo")
    )
    assert one == (700, 400) and two == (1200, 400)


def test_the_held_out_evaluations_show_progress(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before and after training the held-out rows are scored, minutes on a CPU: each
    shows a bar, as the training steps do."""
    from trainer.train.loop import run_training

    cfg = _cfg(tiny, tmp_path, "sft", max_steps=1)
    run_training(cfg, cache_dir=tmp_path / "cache", registry_dir=tmp_path / "data")
    err = capsys.readouterr().err
    assert err.count("held-out loss") >= 2, err[-2000:]
    assert "train sft" in err


def test_sequence_rows_are_batched_by_length(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    """Rows of very different lengths: batches drawn by length hold far less padding than
    random ones (LeTI's real rows: 65% real tokens at random, 98% grouped)."""
    rows = [{"text": "word " * (8 if i % 2 else 90)} for i in range(48)]

    def real_share(**kw: object) -> float:
        trainer = _tiny_trainer(tiny, tmp_path, "leti", rows, max_len=128, **kw)
        real = padded = 0
        for batch in trainer.get_train_dataloader():
            mask = batch["attention_mask"]
            real, padded = real + int(mask.sum()), padded + mask.numel()
        return real / padded

    grouped, shuffled = real_share(), real_share(group_by_length=False)
    assert grouped > 0.85 and shuffled < 0.7, (grouped, shuffled)  # 0.88 and 0.55 here


def test_grouping_by_length_is_for_single_sequences(tmp_path: Path) -> None:
    def resolved(**kw: object) -> bool | None:
        return TrainConfig.model_validate({"data_dir": tmp_path, **kw}).group_by_length

    assert resolved(method="leti") and resolved(method="sft") and resolved(method="ilf")
    assert not resolved(method="dpo") and not resolved(method="kto")
    assert not resolved(method="sft", group_by_length=False)
    with pytest.raises(ValueError, match="Leave it off"):
        resolved(method="dpo", group_by_length=True)


def test_the_loss_summary_compares_like_with_like(tmp_path: Path) -> None:
    """A swinging curve whose first step happens to be low must not read as a rise: the
    summary compares the mean of the first tenth of the steps with the mean of the last."""
    from trainer.train.loop import _summary, describe_loss

    cfg = TrainConfig(base="smollm2-135m", data_dir=tmp_path, out_dir=tmp_path, method="sft")
    history = [{"step": i + 1, "loss": 0.03 if i % 2 == 0 else 0.20} for i in range(20)]
    m = _summary(cfg, history, 1, 2, 10)
    assert m["first_loss"] == 0.03 and m["loss_window"] == 2
    assert m["start_loss"] == pytest.approx(0.115) and m["final_loss"] == pytest.approx(0.115)
    line = describe_loss(m)
    assert "loss 0.1150 -> 0.1150" in line and "first and last 2 steps" in line, line
    assert "min 0.0300" in line
