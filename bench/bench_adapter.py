"""What a GGUF LoRA applied at load time costs at inference, against its base and a merged GGUF.

`fixloop export --lora-only` registers a trained model as the base GGUF plus a GGUF LoRA
(llama.cpp's `lora_path`), so a retrain never re-quantizes the base; a merged export bakes
the adapter into one quantized GGUF. This measures what each form costs a user: prompt
evaluation and generation speed, read from llama.cpp's own counters
(`llama_perf_context`: t_p_eval_ms over n_p_eval prompt tokens, t_eval_ms over n_eval
generated tokens) for the same first-turn prompts of MBPP validation tasks, greedy, with
the KV cache cleared before every reply so each prompt is evaluated whole. The models are
loaded side by side and take turns (the order rotates every round), so load on the
machine falls on all of them alike. The figure per model is the median over replies;
the ratio is the base's time per token over the model's (below 1: slower than the base).

    .venv/bin/python bench/bench_adapter.py --model qwen2.5-coder-0.5b \
        --compare qwen2.5-coder-0.5b-dpo-nll-exp07 --compare MERGED_NAME --tasks 6 --record
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import llama_cpp
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.backends import make_backend  # noqa: E402
from agent.backends.llama_cpp import LlamaCppBackend  # noqa: E402
from agent.config import load_settings  # noqa: E402
from agent.prompts import SYSTEM, task_prompt  # noqa: E402
from bench.benchmarks_md import add_rows  # noqa: E402
from evals.suites import load_mbpp  # noqa: E402


@dataclass
class Reply:
    """llama.cpp's counters for one reply."""

    prompt_tokens: int
    prompt_ms: float
    gen_tokens: int
    gen_ms: float


def one_reply(backend: LlamaCppBackend, messages: list[dict[str, str]], max_tokens: int) -> Reply:
    """Evaluate the whole prompt (cache cleared) and generate greedily; llama.cpp's timings."""
    llm = backend.llm
    llm.reset()  # no prefix reuse: every model evaluates the same whole prompt
    llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
    llm.create_chat_completion(
        messages=messages, temperature=0.0, top_p=1.0, max_tokens=max_tokens, seed=0
    )
    perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
    return Reply(
        int(perf.n_p_eval), float(perf.t_p_eval_ms), int(perf.n_eval), float(perf.t_eval_ms)
    )


def load(name: str, n_ctx: int) -> LlamaCppBackend:
    settings, _ = load_settings({"model": name, "n_ctx": n_ctx})
    backend = make_backend(settings)
    if not isinstance(backend, LlamaCppBackend):
        raise SystemExit(f"{name}: the benchmark reads llama.cpp's counters; give a GGUF model")
    return backend


def summary(replies: list[Reply]) -> dict[str, float]:
    """Median prompt and generation tokens/s over the replies, and their token totals."""
    return {
        "prompt_tok_s": round(
            statistics.median(r.prompt_tokens / r.prompt_ms * 1e3 for r in replies), 1
        ),
        "gen_tok_s": round(
            statistics.median(r.gen_tokens / r.gen_ms * 1e3 for r in replies if r.gen_tokens), 1
        ),
        "prompt_tokens": sum(r.prompt_tokens for r in replies),
        "gen_tokens": sum(r.gen_tokens for r in replies),
    }


SECTION = "## Inference with a GGUF LoRA, against its base and a merged GGUF"
SECTION_INTRO = """
Measured by `bench/bench_adapter.py` (see its docstring): llama.cpp's own prompt-evaluation
and generation counters for the same first-turn MBPP validation prompts, greedy, KV cache
cleared before every reply, the models loaded side by side and taking turns. Ratio = the
base's time per token / the model's (below 1: slower than the base).

| date | machine | command | figure | reference | ratio |
|---|---|---|---|---|---|
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", help="the base (reference)")
    parser.add_argument(
        "--compare", action="append", required=True, help="a model to compare (repeatable)"
    )
    parser.add_argument("--tasks", type=int, default=6, help="first N MBPP validation tasks")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--machine", default="cpu-2c")
    parser.add_argument("--record", action="store_true", help="append rows to docs/BENCHMARKS.md")
    args = parser.parse_args()

    names = [args.model, *args.compare]
    if len(set(names)) < len(names):
        parser.error("give each model once: --compare names a model other than --model")
    backends = {name: load(name, args.n_ctx) for name in names}
    prompts = [
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task_prompt(t)}]
        for t in load_mbpp("validation")[: args.tasks]
    ]
    for backend in backends.values():  # warm-up: first-call allocations, page cache
        one_reply(backend, prompts[0], 8)
    replies: dict[str, list[Reply]] = {name: [] for name in names}
    load_avgs = []
    with tqdm(total=args.rounds * len(prompts) * len(names), desc="replies", unit="reply") as bar:
        for rnd in range(args.rounds):
            for i, messages in enumerate(prompts):
                shift = (rnd * len(prompts) + i) % len(names)  # rotate who goes first
                for name in names[shift:] + names[:shift]:
                    replies[name].append(one_reply(backends[name], messages, args.max_tokens))
                    bar.update()
                load_avgs.append(os.getloadavg()[0])
    base = summary(replies[args.model])
    result = {
        "base": {"model": args.model, **base},
        "compared": [],
        "n_threads": backends[args.model].llm.n_threads,
        "load_avg_1m_max": round(max(load_avgs), 2),
        "python": platform.python_version(),
        "llama_cpp_python": llama_cpp.__version__,
    }
    rows = []
    for name in args.compare:
        s = summary(replies[name])
        identity = backends[name].identity
        form = "base + GGUF LoRA" if identity.adapter_sha256 else "one GGUF"
        entry = {
            "model": name,
            "form": form,
            **s,
            "prompt_ratio": round(s["prompt_tok_s"] / base["prompt_tok_s"], 3),
            "gen_ratio": round(s["gen_tok_s"] / base["gen_tok_s"], 3),
        }
        result["compared"].append(entry)
        rows.append(
            f"| {date.today().isoformat()} | {args.machine} (load up to "
            f"{result['load_avg_1m_max']}) | `bench/bench_adapter.py --model {args.model} "
            f"--compare {name} --tasks {args.tasks} --rounds {args.rounds} --max-tokens "
            f"{args.max_tokens}` | {name} ({form}): prompt {s['prompt_tok_s']} tok/s, "
            f"generation {s['gen_tok_s']} tok/s | {args.model}: prompt {base['prompt_tok_s']} "
            f"tok/s, generation {base['gen_tok_s']} tok/s | prompt {entry['prompt_ratio']}, "
            f"generation {entry['gen_ratio']} |"
        )
    print(json.dumps(result, indent=2))
    if args.record:
        add_rows(SECTION, SECTION_INTRO, rows)
        print("recorded in docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
