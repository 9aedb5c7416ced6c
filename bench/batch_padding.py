"""How much of each training batch is padding: random batches against batches by length.

Counts, not timings: the real tokenizer of `--base` gives each row of `<data>/<method>.jsonl`
(train split) its length in tokens, cut at `--max-len`; a batch costs its longest row times
its size (every row is padded to it). Random batches are `torch.randperm` orders, as the
Trainer's RandomSampler draws them; batches by length come from the Trainer's own
`LengthGroupedSampler` (`fixloop train`'s default for sft, leti and ilf). Mean over `--orders`
orders of each.

    .venv/bin/python bench/batch_padding.py --data runs/exp09/data-seed --method leti
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def row_tokens(tok: Any, row: dict[str, Any]) -> int:
    """Tokens of one row as TRL's SFT trainer sees it: text + EOS, or the chat template."""
    if "text" in row:
        return len(tok(row["text"])["input_ids"]) + 1
    if "messages" in row:
        conversation = row["messages"]
    elif isinstance(row["prompt"], str):
        return len(tok(row["prompt"] + row["completion"])["input_ids"]) + 1
    else:
        conversation = row["prompt"] + row["completion"]
    ids = tok.apply_chat_template(conversation, tokenize=True)
    return len(ids["input_ids"] if hasattr(ids, "keys") else ids)


def real_share(lengths: list[int], order: list[int], batch: int) -> tuple[float, int]:
    """(real tokens / padded tokens, padded tokens) of the batches this order makes."""
    real = padded = 0
    for i in range(0, len(order), batch):
        sizes = [lengths[j] for j in order[i : i + batch]]
        real, padded = real + sum(sizes), padded + max(sizes) * len(sizes)
    return real / padded, padded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a `fixloop data build` directory")
    ap.add_argument("--method", default="leti", choices=["sft", "leti", "ilf"])
    ap.add_argument("--base", default="qwen2.5-coder-0.5b")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--orders", type=int, default=10)
    args = ap.parse_args()

    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from agent.config import load_settings
    from trainer.train.data import load_examples
    from trainer.train.modeling import load_tokenizer, resolve_base

    settings = load_settings()[0]
    base = resolve_base(args.base, cache_dir=settings.cache_dir, data_dir=settings.data_dir)
    tok = load_tokenizer(base)
    rows = load_examples(args.data, args.method)
    lengths = [min(row_tokens(tok, r), args.max_len) for r in rows]
    shares: dict[str, list[tuple[float, int]]] = {"random batches": [], "by length": []}
    for seed in range(args.orders):
        gen = torch.Generator().manual_seed(seed)
        shuffled = torch.randperm(len(lengths), generator=gen).tolist()
        shares["random batches"].append(real_share(lengths, shuffled, args.batch_size))
        grouped = LengthGroupedSampler(args.batch_size, lengths=lengths, generator=gen)
        shares["by length"].append(real_share(lengths, list(grouped), args.batch_size))
    print(
        f"{args.method}: {len(rows)} rows, {sum(lengths):,} tokens (max {max(lengths)}), batches "
        f"of {args.batch_size}, {args.base}'s tokenizer, {args.orders} orders each"
    )
    print("\n| batches | real tokens / padded | padded tokens an epoch |\n|---|---:|---:|")
    for name, runs in shares.items():
        share = sum(s for s, _ in runs) / len(runs)
        padded = sum(p for _, p in runs) / len(runs)
        print(f"| {name} | {share:.1%} | {padded:,.0f} |")


if __name__ == "__main__":
    main()
