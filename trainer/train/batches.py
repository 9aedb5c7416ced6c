"""Examples -> tokenized items -> padded tensor batches, per method."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from trainer.train.config import Method
from trainer.train.data import Encoded, Example, KTOExample, LMExample, PairExample, encode


@dataclass(frozen=True)
class PairItem:
    chosen: Encoded
    rejected: Encoded


@dataclass(frozen=True)
class KTOItem:
    seq: Encoded
    kl: Encoded  # this prompt with another example's completion (KL reference point)
    desirable: bool


Item = Encoded | PairItem | KTOItem


def tokenize_all(
    method: Method, examples: Sequence[Example], tokenizer: Any, max_len: int
) -> list[Item]:
    """Encode every example; KTO's KL pair uses the next example's completion."""
    items: list[Item] = []
    n = len(examples)
    for i, ex in enumerate(examples):
        if isinstance(ex, LMExample):
            items.append(encode(tokenizer, ex.prompt, ex.completion, max_len))
        elif isinstance(ex, PairExample):
            items.append(
                PairItem(
                    encode(tokenizer, ex.prompt, ex.chosen, max_len),
                    encode(tokenizer, ex.prompt, ex.rejected, max_len),
                )
            )
        elif isinstance(ex, KTOExample):
            other = examples[(i + 1) % n]
            assert isinstance(other, KTOExample)
            items.append(
                KTOItem(
                    encode(tokenizer, ex.prompt, ex.completion, max_len),
                    encode(tokenizer, ex.prompt, other.completion, max_len),
                    ex.label,
                )
            )
    empty = [i for i, it in enumerate(items) if _loss_tokens(it) == 0]
    if empty:
        raise ValueError(
            f"{len(empty)} example(s) (first: #{empty[0]}) have no completion tokens left "
            f"after cutting to max_len={max_len}; raise --max-len or shorten the prompts."
        )
    return items


def _loss_tokens(item: Item) -> int:
    if isinstance(item, Encoded):
        return item.n_loss_tokens
    if isinstance(item, PairItem):
        return min(item.chosen.n_loss_tokens, item.rejected.n_loss_tokens)
    return min(item.seq.n_loss_tokens, item.kl.n_loss_tokens)


def pad(seqs: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(s.input_ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        n = len(s.input_ids)
        ids[row, :n] = torch.tensor(s.input_ids)
        labels[row, :n] = torch.tensor(s.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class Collator:
    """LM: one row per item. DPO: [chosen..., rejected...]. KTO: [completions..., kl...]."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: list[Item]) -> dict[str, torch.Tensor]:
        first = items[0]
        if isinstance(first, Encoded):
            return pad(items, self.pad_id)  # type: ignore[arg-type]
        if isinstance(first, PairItem):
            pairs: list[PairItem] = items  # type: ignore[assignment]
            return pad([p.chosen for p in pairs] + [p.rejected for p in pairs], self.pad_id)
        kto: list[KTOItem] = items  # type: ignore[assignment]
        batch = pad([k.seq for k in kto] + [k.kl for k in kto], self.pad_id)
        batch["desirable"] = torch.tensor([k.desirable for k in kto], dtype=torch.bool)
        return batch


class EpochSampler(torch.utils.data.Sampler[int]):
    """A seeded permutation per epoch, so a resumed run sees the same order."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())

    def __len__(self) -> int:
        return self.n
