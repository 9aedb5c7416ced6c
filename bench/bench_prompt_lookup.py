"""Prompt-lookup drafting (speculative decoding from the context) against plain decoding.

The agent's loop is the workload: repair turns re-emit most of the previous
program, and models echo the task's asserts, so n-grams already in the context
predict many of the next tokens. This runs the real repair loop (`run_suite`,
greedy, the same settings except `prompt_lookup`) over MBPP train tasks with
two llama.cpp backends loaded side by side, alternating which goes first per
task. Per episode it compares generation seconds and tokens, and whether the
two episodes' replies are identical (greedy either way; batched verification can
still flip a near-tie).

    .venv/bin/python bench/bench_prompt_lookup.py --model qwen2.5-coder-0.5b \\
        --ids 601-620 --draft 10 --record
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.backends import make_backend  # noqa: E402
from agent.config import load_settings  # noqa: E402
from agent.eval.runner import read_results, results_path, run_suite  # noqa: E402
from agent.eval.suites import load_mbpp, select  # noqa: E402


def replies(log_path: Path) -> list[str]:
    """The model's replies in one logged episode, in order."""
    out = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("type") == "model_replied":
            out.append(event["text"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--ids", default="601-620", help="MBPP train task ids")
    ap.add_argument("--draft", type=int, default=10, help="tokens drafted per lookup")
    ap.add_argument("--max-turns", type=int, default=3)
    ap.add_argument("--record", action="store_true", help="print a BENCHMARKS.md row")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fixloop-plx-"))
    base, _ = load_settings({"model": args.model, "sessions_dir": tmp / "sessions"})
    variants = {
        "plain": base,
        "lookup": base.model_copy(update={"prompt_lookup": args.draft}),
    }
    backends = {name: make_backend(s) for name, s in variants.items()}
    tasks = select(load_mbpp("train"), ids=args.ids)
    totals = {name: {"tokens": 0, "gen_s": 0.0, "passed": 0} for name in variants}
    identical = 0
    bar = tqdm(tasks, unit="task", desc="prompt lookup vs plain", file=sys.stderr)
    for i, task in enumerate(bar):
        order = list(variants) if i % 2 == 0 else list(reversed(variants))
        texts: dict[str, list[str]] = {}
        for name in order:
            run_suite(
                [task],
                variants[name],
                max_turns=args.max_turns,
                out_dir=tmp / name,
                progress=False,
                backend=backends[name],
                label=name,
            )
            record = read_results(results_path(tmp / name, name))[1][-1]
            totals[name]["tokens"] += record.completion_tokens
            totals[name]["gen_s"] += record.gen_s
            totals[name]["passed"] += int(record.passed)
            texts[name] = replies(Path(record.log_path))
        identical += texts["plain"] == texts["lookup"]
        rates = {n: t["tokens"] / max(t["gen_s"], 1e-9) for n, t in totals.items()}
        bar.set_postfix(plain=f"{rates['plain']:.1f}", lookup=f"{rates['lookup']:.1f}")

    rate = {n: t["tokens"] / max(t["gen_s"], 1e-9) for n, t in totals.items()}
    speedup = totals["plain"]["gen_s"] / max(totals["lookup"]["gen_s"], 1e-9)
    for name, t in totals.items():
        print(
            f"{name:7s} {t['tokens']:6d} tokens in {t['gen_s']:7.1f} s = {rate[name]:5.1f} tok/s, "
            f"{t['passed']}/{len(tasks)} passed"
        )
    print(f"identical episodes: {identical}/{len(tasks)}; generation-time speedup {speedup:.2f}x")
    if args.record:
        load = os.getloadavg()[0]
        print(
            f"| {date.today()} | {platform.node() or 'cpu'} ({os.cpu_count()} cores, "
            f"load {load:.2f}) | `bench/bench_prompt_lookup.py --model {args.model} --ids "
            f"{args.ids} --draft {args.draft}` | prompt lookup: {rate['lookup']:.1f} tok/s, "
            f"{totals['lookup']['passed']}/{len(tasks)} passed | plain decoding: "
            f"{rate['plain']:.1f} tok/s, {totals['plain']['passed']}/{len(tasks)} passed | "
            f"{speedup:.2f}x ({identical}/{len(tasks)} episodes identical) |"
        )


if __name__ == "__main__":
    main()
