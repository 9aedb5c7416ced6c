"""The objective of each method, on padded batches (labels -100 where no loss is taken).

- sft / ilf / leti: token-level cross-entropy on the labelled tokens.
- dpo: -log σ(β[(log π(c) - log π_ref(c)) - (log π(r) - log π_ref(r))])  (Rafailov et al.).
- kto: desirable 1 - σ(β(r - z)), undesirable 1 - σ(β(z - r)), with r = log π - log π_ref
  and z the batch's KL estimate from mismatched (prompt, completion) pairs, detached and
  clamped at 0 (Ethayarajh et al.), as TRL computes it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of log p(label) over each sequence's labelled tokens (next-token shifted)."""
    logits = logits[:, :-1, :]
    labels = labels[:, 1:]
    mask = labels != -100
    safe = labels.masked_fill(~mask, 0)
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), safe.reshape(-1), reduction="none"
    ).view(labels.shape)
    return -(nll * mask).sum(-1)


def forward_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return sequence_logps(out.logits, batch["labels"])


def lm_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    out = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
    )
    return out.loss, {}


def dpo_loss(
    policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sequences are [chosen..., rejected...] along the batch dimension."""
    n = policy_logps.shape[0] // 2
    chosen = policy_logps[:n] - ref_logps[:n]
    rejected = policy_logps[n:] - ref_logps[n:]
    margin = beta * (chosen - rejected)
    loss = -F.logsigmoid(margin).mean()
    return loss, {
        "reward_acc": (margin > 0).float().mean().item(),
        "margin": margin.mean().item() / beta,
    }


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    policy_kl_logps: torch.Tensor,
    ref_kl_logps: torch.Tensor,
    desirable: torch.Tensor,
    beta: float,
    w_desirable: float,
    w_undesirable: float,
    gather: Any = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    kl_terms = (policy_kl_logps - ref_kl_logps).detach()
    if gather is not None:
        kl_terms = gather(kl_terms)
    z = kl_terms.mean().clamp(min=0)
    ratio = policy_logps - ref_logps
    good = w_desirable * (1 - torch.sigmoid(beta * (ratio - z)))
    bad = w_undesirable * (1 - torch.sigmoid(beta * (z - ratio)))
    losses = torch.where(desirable, good, bad)
    return losses.mean(), {"kl": z.item()}
