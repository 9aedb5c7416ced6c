"""The trainer reads what `fixloop data build` really writes, from real session logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.data_support import SESSIONS
from tests.trainer.tiny import shared_tiny
from trainer.train.config import LETI_TOKENS, METHODS, TrainConfig
from trainer.train.data import load_examples, manifest_info

pytest.importorskip("transformers")
pytest.importorskip("trl")

# The TRL dataset columns each method's rows have.
COLUMNS = {
    "sft": {"prompt", "completion"},
    "leti": {"messages"},
    "ilf": {"prompt", "completion"},
    "dpo": {"prompt", "chosen", "rejected"},
    "kto": {"prompt", "completion", "label"},
}


@pytest.mark.slow  # a tiny model and a TRL trainer per method
def test_every_method_trains_on_a_real_build(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.retrain import build_data
    from trainer.train.modeling import BaseSource, add_leti_tokens, load_tokenizer, peft_compat
    from trainer.train.trainers import build_trainer

    rows = build_data([SESSIONS], tmp_path / "data", progress=False)
    manifest, sha = manifest_info(tmp_path / "data")
    assert manifest is not None and len(sha) == 64
    base = shared_tiny(tmp_path_factory.getbasetemp())[0]
    for method in METHODS:
        if not rows.get(method):
            continue
        examples = load_examples(tmp_path / "data", method, split=None)
        assert len(examples) == rows[method]
        assert all(set(e) == COLUMNS[method] for e in examples), method
        cfg = TrainConfig(method=method, base=str(base), data_dir=tmp_path / "data", max_len=2048)
        tok = load_tokenizer(BaseSource("tiny", "hf", base))
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        ids = add_leti_tokens(tok, model) if cfg.needs_leti_tokens else []
        with peft_compat():
            trainer = build_trainer(
                cfg, model, tok, examples, output_dir=tmp_path / "out", new_token_ids=ids
            )
        assert len(trainer.train_dataset) == len(examples), method  # none left out
        if method == "leti":
            assert all(e["messages"][0]["role"] == "system" for e in examples)
            systems = {e["messages"][0]["content"] for e in examples}
            # Chat-shaped as the agent prompts: the reward token is one special token at the
            # start of the user turn, and LeTI's LM loss covers the whole conversation.
            for it in trainer.train_dataset:
                rewards = [i for i, t in enumerate(it["input_ids"]) if t in ids[:2]]
                assert len(rewards) == 1
                head = tok.decode(it["input_ids"][: rewards[0]])
                assert head.rstrip().endswith("user")
                # The session's system prompt, as the agent sent it (not the template's own).
                assert any(system in head for system in systems)
                assert "```python" in tok.decode(it["input_ids"][rewards[0] :])
                assert it["labels"] == it["input_ids"]
            assert any(ids[2] in it["input_ids"] for it in trainer.train_dataset)
            assert set(LETI_TOKENS) <= set(tok.get_vocab())
    assert rows.get("leti") and rows.get("sft"), rows


def test_sft_with_repair_adds_the_repair_trajectories(tmp_path: Path) -> None:
    """--with-repair: sft.jsonl's rows plus repair.jsonl's, the loss on the repairing reply
    (the prompt is the conversation up to it, with the failed attempt and its feedback)."""
    from trainer.retrain import build_data

    rows = build_data([SESSIONS], tmp_path / "data", progress=False)
    assert rows["repair"] > 0
    plain = load_examples(tmp_path / "data", "sft", split=None)
    both = load_examples(tmp_path / "data", "sft", split=None, with_repair=True)
    assert len(both) == len(plain) + rows["repair"]
    for row in both[len(plain) :]:
        roles = [m["role"] for m in row["prompt"]]
        assert roles[-2:] == ["assistant", "user"]  # the failed attempt, then its feedback
        assert [m["role"] for m in row["completion"]] == ["assistant"]
    cfg = TrainConfig(method="sft", base="b", data_dir=tmp_path / "data", with_repair=True)
    assert [p.name for p in cfg.data_files] == ["sft.jsonl", "repair.jsonl"]
    with pytest.raises(ValueError, match="--method sft"):
        TrainConfig(method="dpo", base="b", data_dir=tmp_path, with_repair=True)
