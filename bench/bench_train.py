"""The trainer on TRL against the hand-written loop it replaced, side by side (issue 14).

Both train the same config on the same data, in fresh processes, one after the other
(`--reps` alternates them): the old loop from git history (`--old-rev`, by default the last
commit that had it), extracted to a temporary tree, and this checkout's trainer. Prints the
loss at every step of each, tokens/s (from each run's metrics.json) and CPU seconds, as a
markdown table to paste into docs/BENCHMARKS.md; `--json` writes the raw numbers.

    .venv/bin/python bench/bench_train.py --base qwen2.5-coder-0.5b --method sft --steps 20
    .venv/bin/python bench/bench_train.py --tiny --steps 6     # the tests' tiny model, toy data

LoRA dropout and warmup are 0 by default: TRL switches dropout off for DPO/KTO (the old loop
did not), and the Trainer rounds warmup steps up where the old loop rounded down, so with
either the curves differ by design. Tokens/s counts the tokens of the batch that carry
attention (prompt and completion); for KTO the old loop also counted its KL sequences.
On the tests' tiny model and a 43M-parameter random Llama the curves matched to 4 decimals
(sft, dpo). On CPU TRL's fused LM head (every position projected, in chunks, and again in
the backward) made SFT 0.78x the old loop on the 0.5B; with fixloop's CPU head, which
scores only the labelled positions (`trainer/train/cpu_head.py`), 1.31x (docs/BENCHMARKS.md).
Give --data as an absolute path: the old loop runs from a temporary tree.

`--trl-head` compares against TRL's own LM head instead of the old loop: this checkout's
trainer twice, once with the CPU head switched off. That is the reference for DPO and KTO,
whose TRL trainers score every prompt position for the policy and again for the reference.

`--fp32` compares bf16 (the default where the CPU has bf16 instructions: AVX512_BF16,
AMX-BF16) against fp32: this checkout twice, the same config but for `bf16`.

`--ungrouped` compares batching by length (the default for sft, leti and ilf) against random
batches: this checkout twice, on the same first steps x batch-size rows (`--limit`), so
each run is one epoch over the same rows and the train seconds compare directly.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASE = "qwen2.5-coder-0.5b"
OLD_REV = "576a4eb"  # the last commit with trainer/train/loop.py's own loop and losses.py

# mode -> (reference's label, this checkout's label), and how the reference is described
LABELS = {
    "ungrouped": ("random batches", "by length"),
    "trl-head": ("TRL's head", "CPU head"),
    "old-loop": ("old loop", "TRL"),
    "fp32": ("fp32", "bf16"),
}
REFERENCES = {
    "ungrouped": "this checkout, random batches (one epoch over the same rows).",
    "trl-head": "this checkout without the CPU head.",
    "fp32": "this checkout in fp32 (`--no-bf16`).",
}

RUNNER = """
import json, os, resource, sys, time
from pathlib import Path
if os.environ.get("BENCH_TRL_HEAD"):  # the reference: TRL's own chunked LM head
    import trainer.train.trainers as trainers
    trainers.add_compact_cpu_head = lambda model: None
from trainer.train.config import TrainConfig
from trainer.train.loop import run_training
cfg = TrainConfig.model_validate(json.loads(sys.argv[1]))
cpu = time.process_time()
r = run_training(cfg, cache_dir=Path(sys.argv[2]), registry_dir=Path(sys.argv[3]), progress=False)
rows = [json.loads(x) for x in (r.run_dir / "history.jsonl").read_text().splitlines() if x]
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps({"metrics": r.metrics, "losses": [h["loss"] for h in rows],
                              "cpu_s": time.process_time() - cpu, "peak_rss_mb": rss_mb}))
"""


def old_tree(rev: str, into: Path) -> Path:
    """The repository as it was at `rev` (git archive), for the old loop."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def run(tree: Path, cfg: dict, cache: Path, registry: Path, trl_head: bool = False) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "TQDM_DISABLE": "1"}
    if trl_head:
        env["BENCH_TRL_HEAD"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(cfg), str(cache), str(registry)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        sys.exit(f"training in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=BASE)
    ap.add_argument("--data", type=Path, help="default: DATA_DIR/datasets")
    ap.add_argument("--tiny", action="store_true", help="the tests' toy data (and tiny model)")
    ap.add_argument("--method", default="sft", choices=["sft", "leti", "ilf", "dpo", "kto"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lora-dropout", type=float, default=0.0)
    ap.add_argument("--warmup-ratio", type=float, default=0.0)
    ap.add_argument("--reps", type=int, default=1, help="old/new pairs, alternating")
    ap.add_argument("--old-rev", default=OLD_REV)
    ap.add_argument(
        "--trl-head", action="store_true", help="reference: TRL's LM head, not the old loop"
    )
    ap.add_argument(
        "--ungrouped", action="store_true", help="reference: random batches, not by length"
    )
    ap.add_argument("--fp32", action="store_true", help="reference: fp32; this checkout: bf16")
    ap.add_argument("--json", type=Path, help="write the raw numbers here")
    args = ap.parse_args()

    from agent.config import load_settings

    settings = load_settings()[0]
    base, data = args.base, args.data or settings.data_dir / "datasets"
    if args.tiny:
        from tests.trainer.tiny import shared_tiny

        tiny_base, tiny_data = shared_tiny(Path(tempfile.gettempdir()) / "fixloop-bench-train")
        base, data = (args.base if args.base != BASE else str(tiny_base)), args.data or tiny_data
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        cfg = {
            "method": args.method,
            "base": base,
            "data_dir": str(data),
            "out_dir": str(Path(tmp) / "runs"),
            "max_steps": args.steps,
            "batch_size": args.batch_size,
            "max_len": args.max_len,
            "lr": args.lr,
            "lora_r": args.lora_r,
            "lora_alpha": 2 * args.lora_r,
            "lora_dropout": args.lora_dropout,
            "warmup_ratio": args.warmup_ratio,
            "save_every": 10**6,  # checkpoint only at the end, in both
        }
        if args.ungrouped:  # one epoch over the same rows, in both
            cfg["limit"] = args.steps * args.batch_size
        if args.fp32:
            cfg["bf16"] = True  # an error where the CPU has no native bf16
        this_tree = bench_mode(args) != "old-loop"
        old = ROOT if this_tree else old_tree(args.old_rev, Path(tmp) / "old")
        results: dict[str, list[dict]] = {"old": [], "new": []}
        for _ in range(args.reps):
            for name, tree in (("old", old), ("new", ROOT)):
                print(f"training: {name} ...", file=sys.stderr)
                reference = name == "old"
                run_cfg = dict(cfg)
                if reference and args.ungrouped:
                    run_cfg["group_by_length"] = False
                if reference and args.fp32:
                    run_cfg["bf16"] = False
                results[name].append(
                    run(
                        tree,
                        run_cfg,
                        settings.cache_dir,
                        settings.data_dir,
                        trl_head=reference and args.trl_head,
                    )
                )
    report(args, base, results)
    if args.json:
        args.json.write_text(json.dumps({"config": cfg, "results": results}, indent=2) + "\n")


def bench_mode(args: argparse.Namespace) -> str:
    """Which reference this run compares against (a key of LABELS)."""
    modes = {"ungrouped": args.ungrouped, "trl-head": args.trl_head, "fp32": args.fp32}
    return next((m for m, on in modes.items() if on), "old-loop")


def report(args: argparse.Namespace, base: str, results: dict[str, list[dict]]) -> None:
    old, new = results["old"][0], results["new"][0]
    mode = bench_mode(args)
    ref, ours = LABELS[mode]
    print(f"## Trainer: {ours} vs {ref} ({args.method}, {Path(base).name}, {platform.node()})")
    print()
    print(f"{args.steps} steps, batch {args.batch_size}, max_len {args.max_len}, lr {args.lr}, ")
    print(f"LoRA r {args.lora_r}, dropout {args.lora_dropout}; reference = ", end="")
    print(REFERENCES.get(mode, f"{args.old_rev}."))
    print()
    print(f"| step | {ref} loss | {ours} loss | diff |")
    print("|---:|---:|---:|---:|")
    for i, (a, b) in enumerate(zip(old["losses"], new["losses"], strict=False), 1):
        print(f"| {i} | {a:.4f} | {b:.4f} | {b - a:+.4f} |")
    print()
    print("| | tokens/s | train s | CPU s (process) | peak RSS |")
    print("|---|---:|---:|---:|---:|")
    for name in ("old", "new"):
        for r in results[name]:
            m = r["metrics"]
            label = ours if name == "new" else ref
            rss = f"{r['peak_rss_mb'] / 1024:.1f} GB" if "peak_rss_mb" in r else "-"
            row = f"| {label} | {m['tokens_per_s']} | {m['train_seconds']} | {r['cpu_s']:.1f} |"
            print(f"{row} {rss} |")


if __name__ == "__main__":
    main()
