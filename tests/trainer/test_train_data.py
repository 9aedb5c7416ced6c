"""The trainer reads what `fixloop data build` really writes, from real session logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.data_support import SESSIONS
from tests.trainer.tiny import shared_tiny
from trainer.train.config import LETI_TOKENS, METHODS
from trainer.train.data import KTOExample, LMExample, PairExample, load_examples, manifest_info

pytest.importorskip("transformers")


def test_every_method_trains_on_a_real_build(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from transformers import AutoTokenizer

    from trainer.retrain import build_data
    from trainer.train.batches import tokenize_all
    from trainer.train.modeling import add_leti_tokens

    rows = build_data([SESSIONS], tmp_path / "data", progress=False)
    manifest, sha = manifest_info(tmp_path / "data")
    assert manifest is not None and len(sha) == 64
    tok = AutoTokenizer.from_pretrained(shared_tiny(tmp_path_factory.getbasetemp())[0])
    ids = add_leti_tokens(tok, None)
    kinds = {
        "sft": LMExample,
        "leti": LMExample,
        "ilf": LMExample,
        "dpo": PairExample,
        "kto": KTOExample,
    }
    for method in METHODS:
        if not rows.get(method):
            continue
        examples = load_examples(tmp_path / "data", method, split=None)
        assert len(examples) == rows[method]
        assert all(isinstance(e, kinds[method]) for e in examples)
        items = tokenize_all(method, examples, tok, 2048)  # raises if a row scores nothing
        assert len(items) == len(examples)
        if method == "leti":
            # Chat-shaped as the agent prompts: the reward token is one special token at the
            # start of the user turn, and LeTI's LM loss covers the whole conversation.
            for it in items:
                rewards = [i for i, t in enumerate(it.input_ids) if t in ids[:2]]  # type: ignore[union-attr]
                assert len(rewards) == 1
                head = tok.decode(it.input_ids[: rewards[0]])  # type: ignore[union-attr]
                assert head.rstrip().endswith("user")
                assert it.labels == it.input_ids  # type: ignore[union-attr]
            assert any(ids[2] in it.input_ids for it in items)  # type: ignore[union-attr]
    assert rows.get("leti") and rows.get("sft"), rows
    assert set(LETI_TOKENS) <= set(tok.get_vocab())
