"""TRL's trainers compute what fixloop's hand-written loop computed (issue 14, item 3).

The loop and its `losses.py` are gone; their formulas and tokenization are kept here as the
reference. On the tiny model and the toy datasets, for the batch TRL builds (through
fixloop's own `build_trainer`): the tokens and the loss positions equal the old `encode`'s,
TRL's SFT/DPO/KTO losses equal the old formulas, and two SFTTrainer steps equal two steps of
the old update (AdamW, cosine schedule, clipping) from the same LoRA init.

Measured before the old code was deleted (commit 576a4eb, old modules against TRL on the
same batch): sft 10.81782818 vs 10.81782722, ilf 10.80898476 vs 10.80898190, leti
10.81037140 vs 10.81037235, dpo 0.73410124 vs 0.73410040, kto 0.51219779 vs 0.51219779;
two SFT steps [10.814551, 10.561131] vs the old loop's [10.814551, 10.561132].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.trainer.tiny import shared_tiny
from trainer.train.config import TrainConfig
from trainer.train.modeling import peft_compat

pytest.importorskip("trl")
pytest.importorskip("peft")

BETA = 0.5
MAX_LEN = 128
TOL = 1e-5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return shared_tiny(tmp_path_factory.getbasetemp())


# --- the reference: fixloop's former formulas (trainer/train/losses.py) ----------------


def ref_sequence_logps(logits: Any, labels: Any) -> Any:
    """Sum of log p(label) over each sequence's labelled tokens (next-token shifted)."""
    import torch.nn.functional as F

    logits, labels = logits[:, :-1, :], labels[:, 1:]
    mask = labels != -100
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.masked_fill(~mask, 0).reshape(-1),
        reduction="none",
    ).view(labels.shape)
    return -(nll * mask).sum(-1)


def ref_dpo_loss(policy: Any, ref: Any, beta: float) -> Any:
    """-log σ(β[(log π(c) - log π_ref(c)) - (log π(r) - log π_ref(r))]); rows [chosen, rejected]."""
    import torch.nn.functional as F

    n = policy.shape[0] // 2
    margin = beta * ((policy[:n] - ref[:n]) - (policy[n:] - ref[n:]))
    return -F.logsigmoid(margin).mean()


def ref_kto_loss(
    policy: Any, ref: Any, policy_kl: Any, ref_kl: Any, desirable: Any, beta: float
) -> Any:
    """Desirable 1 - σ(β(r - z)), undesirable 1 - σ(β(z - r)); z the batch's detached,
    clamped KL estimate from mismatched (prompt, completion) pairs."""
    import torch

    z = (policy_kl - ref_kl).detach().mean().clamp(min=0)
    ratio = policy - ref
    good = 1 - torch.sigmoid(beta * (ratio - z))
    bad = 1 - torch.sigmoid(beta * (z - ratio))
    return torch.where(desirable, good, bad).mean()


def ref_encode(tok: Any, prompt: Any, completion: Any) -> tuple[list[int], list[int]]:
    """The old tokenization: (ids, loss mask), the prompt rendered and tokenized apart."""
    if isinstance(completion, str):  # TRL's prepared rows already end with EOS; the old added it
        completion = completion.removesuffix(tok.eos_token)
    if prompt == "" and isinstance(completion, str):
        p_text, c_text = "", completion + tok.eos_token
    elif isinstance(prompt, list) or isinstance(completion, list):
        p_msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        c_msgs = (
            completion
            if isinstance(completion, list)
            else [{"role": "assistant", "content": completion}]
        )
        p_text = tok.apply_chat_template(p_msgs, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(p_msgs + c_msgs, tokenize=False)
        assert full.startswith(p_text)
        c_text = full[len(p_text) :]
    else:
        p_text, c_text = prompt, completion + tok.eos_token
    p_ids = tok(p_text, add_special_tokens=True)["input_ids"] if p_text else []
    c_ids = tok(c_text, add_special_tokens=not p_text)["input_ids"]
    assert len(p_ids) + len(c_ids) <= MAX_LEN  # the toy rows are never cut
    return p_ids + c_ids, [0] * len(p_ids) + [1] * len(c_ids)


def ref_pad(seqs: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in seqs)
    out = {
        "input_ids": torch.full((len(seqs), width), pad_id),
        "labels": torch.full((len(seqs), width), -100),
        "attention_mask": torch.zeros((len(seqs), width), dtype=torch.long),
    }
    for row, (ids, mask) in enumerate(seqs):
        t = torch.tensor(ids)
        out["input_ids"][row, : len(ids)] = t
        out["labels"][row, : len(ids)] = t.masked_fill(torch.tensor(mask) == 0, -100)
        out["attention_mask"][row, : len(ids)] = 1
    return out


def ref_logps(model: Any, batch: dict[str, Any]) -> Any:
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return ref_sequence_logps(out.logits, batch["labels"])


# --- fixloop's trainers -------------------------------------------------------------


def _trainer(
    method: str, tiny: tuple[Path, Path], tmp_path: Path, compact_cpu_head: bool = True, **kw: Any
) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.train.data import load_examples
    from trainer.train.modeling import BaseSource, add_leti_tokens, load_tokenizer
    from trainer.train.trainers import build_trainer

    base, data = tiny
    cfg = TrainConfig.model_validate(
        {
            "method": method,
            "base": str(base),
            "data_dir": data,
            "lr": 3e-2,
            "batch_size": 4,
            "lora_r": 8,
            "lora_dropout": 0.0,
            "warmup_ratio": 0.0,
            "max_len": MAX_LEN,
            "beta": BETA,
            **kw,
        }
    )
    tok = load_tokenizer(BaseSource(str(base), "hf", base))
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    new_ids = add_leti_tokens(tok, model) if cfg.needs_leti_tokens else []
    rows = load_examples(data, cfg.method)
    with peft_compat():
        return build_trainer(
            cfg,
            model,
            tok,
            rows,
            output_dir=tmp_path / "out",
            new_token_ids=new_ids,
            compact_cpu_head=compact_cpu_head,
        )


def _perturb(model: Any) -> None:
    """LoRA B starts at zero (policy == reference); move it so the log-ratios are not 0."""
    import torch

    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))


def _rows(batch: dict[str, Any], prefix: str = "", mask: str = "completion_mask") -> list[Any]:
    """(token ids, loss mask) per row of a TRL batch, padding stripped."""
    out = []
    for ids, att, m in zip(
        batch[f"{prefix}input_ids"],
        batch[f"{prefix}attention_mask"],
        batch[f"{prefix}{mask}"],
        strict=True,
    ):
        n = int(att.sum())
        bits = [int(x != -100) for x in m[:n].tolist()] if mask == "labels" else m[:n].tolist()
        out.append((ids[:n].tolist(), bits))
    return out


def _prompt_completion(row: dict[str, Any]) -> tuple[Any, Any]:
    return ("", row["text"]) if "text" in row else (row["prompt"], row["completion"])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "ilf", "leti"])
def test_sft_loss_equals_the_old_lm_loss(
    method: str, tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    import torch

    trainer = _trainer(method, tiny, tmp_path)
    model, tok = trainer.model, trainer.processing_class
    _perturb(model)
    rows = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(rows)
    old = [ref_encode(tok, *_prompt_completion(r)) for r in rows]
    assert _rows(batch, mask="labels") == old  # same tokens, loss on the same ones
    with torch.no_grad(), peft_compat():
        new_loss = trainer.compute_loss(model, dict(batch)).item()
        ref = ref_pad(old, tok.pad_token_id)
        old_loss = model(**ref).loss.item()
    assert abs(new_loss - old_loss) < TOL, (new_loss, old_loss)


@pytest.mark.slow
def test_dpo_loss_equals_the_old_one(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    import torch

    trainer = _trainer("dpo", tiny, tmp_path)
    model, tok = trainer.model, trainer.processing_class
    _perturb(model)
    rows = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(rows)
    # TRL's batch is [chosen..., rejected...], as the old collator's.
    old = [ref_encode(tok, r["prompt"], r["chosen"]) for r in rows]
    old += [ref_encode(tok, r["prompt"], r["rejected"]) for r in rows]
    assert _rows(batch) == old
    with torch.no_grad(), peft_compat():
        new_loss = trainer.compute_loss(model, dict(batch)).item()
        ref_batch = ref_pad(old, tok.pad_token_id)
        policy = ref_logps(model, ref_batch)
        with model.disable_adapter():
            ref = ref_logps(model, ref_batch)
        old_loss = ref_dpo_loss(policy, ref, BETA).item()
    assert abs(new_loss - old_loss) < TOL, (new_loss, old_loss)
    assert abs(new_loss - 0.6931) > 1e-3  # the policy is off the reference


@pytest.mark.slow
def test_kto_loss_equals_the_old_one(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    import torch

    trainer = _trainer("kto", tiny, tmp_path)
    model, tok = trainer.model, trainer.processing_class
    _perturb(model)
    n = 4
    rows = [trainer.train_dataset[i] for i in range(n)]
    batch = trainer.data_collator(rows)
    # TRL pairs each prompt with the previous completion of its batch for the KL estimate
    # (the old loader took the next row's); the estimate's formula is the same.
    seqs = [ref_encode(tok, r["prompt"], r["completion"]) for r in rows]
    kls = [
        ref_encode(tok, r["prompt"], rows[(i - 1) % n]["completion"]) for i, r in enumerate(rows)
    ]
    assert _rows(batch) == seqs
    assert _rows(batch, "KL_") == kls
    desirable = torch.tensor([r["label"] for r in rows])
    assert desirable.any() and not desirable.all()
    with torch.no_grad(), peft_compat():
        new_loss = trainer.compute_loss(model, dict(batch)).item()
        ref_batch = ref_pad(seqs + kls, tok.pad_token_id)
        policy = ref_logps(model, ref_batch)
        with model.disable_adapter():
            ref = ref_logps(model, ref_batch)
        old_loss = ref_kto_loss(policy[:n], ref[:n], policy[n:], ref[n:], desirable, BETA).item()
    assert abs(new_loss - old_loss) < TOL, (new_loss, old_loss)
    assert abs(new_loss - 0.5) > 1e-3


@pytest.mark.slow
def test_two_sft_steps_equal_the_old_update(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    """Full-batch steps (4 rows, batch 4), from the same LoRA init: the same two losses."""
    import torch
    from transformers import get_scheduler

    trainer = _trainer("sft", tiny, tmp_path, max_steps=2)
    model, tok = trainer.model, trainer.processing_class
    rows = [trainer.train_dataset[i] for i in range(4)]
    batch = ref_pad([ref_encode(tok, r["prompt"], r["completion"]) for r in rows], tok.pad_token_id)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    start = {n: p.detach().clone() for n, p in params.items()}
    # The old loop's update: AdamW, cosine schedule without warmup, gradients clipped at 1.
    optimizer = torch.optim.AdamW(params.values(), lr=3e-2, weight_decay=0.0)
    schedule = get_scheduler("cosine", optimizer, num_warmup_steps=0, num_training_steps=2)
    old_losses = []
    for _ in range(2):
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        old_losses.append(loss.item())
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(start[n])
    with peft_compat():
        trainer.train()
    new_losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert old_losses[1] < old_losses[0] - 0.1  # the step did something
    assert len(new_losses) == 2
    for a, b in zip(new_losses, old_losses, strict=True):
        assert abs(a - b) < 1e-4, (new_losses, old_losses)


@pytest.mark.parametrize("method", ["sft", "leti", "dpo", "kto"])
def test_compact_cpu_head_equals_trls_chunked_head(
    method: str, tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CPU head that scores only labelled positions gives TRL's loss, gradients and
    logged metrics (DPO/KTO: the reference's and KTO's KL forwards go through it too)."""
    import types

    import torch.nn.functional as F

    from trainer.train import cpu_head

    scored: list[int] = []

    def counting_ce(logits: Any, target: Any, **kw: Any) -> Any:
        scored.append(logits.shape[0])
        return F.cross_entropy(logits, target, **kw)

    monkeypatch.setattr(cpu_head, "F", types.SimpleNamespace(cross_entropy=counting_ce))

    def loss_and_grads(compact: bool) -> tuple[float, dict[str, Any], dict[str, float]]:
        trainer = _trainer(method, tiny, tmp_path / str(compact), compact_cpu_head=compact)
        model = trainer.model
        _perturb(model)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        with peft_compat():
            loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        logged = getattr(trainer, "_metrics", {}).get("train", {})
        metrics = {k: float(sum(v) / len(v)) for k, v in logged.items() if v}
        return loss.item(), grads, metrics

    compact_loss, compact_grads, compact_metrics = loss_and_grads(True)
    calls = len(scored)
    assert calls >= 1  # the compact head ran, on the labelled positions only
    trl_loss, trl_grads, trl_metrics = loss_and_grads(False)
    assert len(scored) == calls  # TRL's own head does not go through it
    # float32 sums in another order: LeTI's loss (about 10.8) differs in the 6th digit
    assert abs(compact_loss - trl_loss) < 1e-5 * max(1.0, abs(trl_loss)), (compact_loss, trl_loss)
    assert compact_grads.keys() == trl_grads.keys() and compact_grads
    for name, grad in trl_grads.items():
        scale = max(1.0, grad.abs().max().item())
        assert (compact_grads[name] - grad).abs().max().item() < 1e-5 * scale, name
    assert compact_metrics.keys() == trl_metrics.keys()
    for key, value in trl_metrics.items():  # entropy, mean logits, top-1 accuracy, rewards
        assert abs(compact_metrics[key] - value) < 1e-4 * max(1.0, abs(value)), key
