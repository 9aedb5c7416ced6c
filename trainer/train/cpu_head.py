"""The LM head on the CPU for TRL's trainers: score only the positions that have a label.

TRL's SFT, DPO and KTO trainers patch the model with a chunked LM head
(`add_fused_lm_head`) that, off Triton devices, projects *every* position through the
vocabulary (prompt and padding too, to keep tile shapes fixed for compilers) and projects
them again in the backward pass to save memory. On a CPU that is the dominant cost for a
small model with a 152k vocabulary: measured with `bench/bench_train.py` on the 0.5B, TRL's
SFT ran at 0.78 of the plain loop, and DPO (whose prompts are most of each sequence, scored
for the policy and again for the reference) slower still.

`add_compact_cpu_head` wraps that forward once more: on a CPU it runs the backbone, keeps
the hidden states of labelled positions only (the completion, in prompt/completion rows and
in DPO's and KTO's completions) and computes their log-probabilities with one projection
and torch's cross-entropy, returning the same `FusedCausalLMOutput` fields TRL's losses and
metrics read. Elsewhere (CUDA, XPU) it defers to TRL's own kernel. Losses and gradients
are TRL's, to float tolerance (tests/trainer/test_trl_equivalence.py).
"""

from __future__ import annotations

import functools
import types
from typing import Any

import torch
import torch.nn.functional as F


def add_compact_cpu_head(model: Any) -> None:
    """Wrap `model.forward` (already patched by TRL) so CPU calls score labelled positions only."""
    from trl.trainer.utils import FusedCausalLMOutput

    trl_forward = model.forward
    backbone = model.base_model  # the decoder stack under the LM head (LoRA layers included)
    config = model.config.get_text_config()
    unsupported = (
        getattr(config, "final_logit_softcapping", None) is not None
        or getattr(config, "output_router_logits", False)
        or getattr(config, "logit_scale", None) not in (None, 1.0)
    )

    @functools.wraps(type(model).forward)  # Trainer and generate read the signature
    def forward(
        self: Any,
        *args: Any,
        fused_lm_head: bool = False,
        labels: torch.Tensor | None = None,
        num_items_in_batch: Any = None,
        **kwargs: Any,
    ) -> Any:
        lm_head = self.get_output_embeddings()
        if (
            not fused_lm_head
            or labels is None
            or unsupported
            or lm_head.weight.device.type != "cpu"
            or kwargs.get("shift_labels") is not None
        ):
            return trl_forward(
                *args,
                fused_lm_head=fused_lm_head,
                labels=labels,
                num_items_in_batch=num_items_in_batch,
                **kwargs,
            )
        kwargs["use_cache"] = False
        hidden = backbone(*args, **kwargs).last_hidden_state[:, :-1]
        targets = labels[:, 1:].to(hidden.device)
        mask = targets != -100
        logits = lm_head(hidden[mask]).float()
        picked = targets[mask]
        log_probs_sel = -F.cross_entropy(logits, picked, reduction="none")
        with torch.no_grad():  # metrics, and WPO's weights (computed without gradient in TRL)
            log_p = torch.log_softmax(logits.detach(), dim=-1)
            entropy_sel = -(log_p.exp() * log_p).sum(-1)
            log_sum_sq_sel = torch.logsumexp(2 * log_p, dim=-1)
            mean_logits_sel = logits.detach().mean(-1)
            top1_sel = logits.detach().argmax(-1) == picked  # bool, as TRL's (DPO masks it)

        def spread(values: torch.Tensor) -> torch.Tensor:
            return values.new_zeros(mask.shape).masked_scatter(mask, values)

        log_probs = spread(log_probs_sel)
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / count,
            log_probs=log_probs,
            entropy=spread(entropy_sel),
            log_sum_sq_probs=spread(log_sum_sq_sel),
            mean_logits=spread(mean_logits_sel),
            is_top1=spread(top1_sel),
            label_mask=mask,
        )

    model.forward = types.MethodType(forward, model)
