"""Generation throughput through the agent versus raw llama-cpp-python, same prompt and model.

The agent path is a real `AgentSession.start()` (header written, prompt counted
and fitted, tokens streamed as events, reply logged) timed from the start of
the episode to its `ModelReplied` event. The raw path is
`Llama.create_chat_completion(stream=True)` on the same loaded model with the
exact messages the agent sent and the same greedy settings, so both produce the
same tokens. Runs alternate after a warm-up (which also fills llama.cpp's
prompt cache for both), and the medians are compared. Goal: ratio >= 0.95.

    .venv/bin/python bench/bench_generation.py --model smollm2-135m --reps 3 --record
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.backends import make_backend  # noqa: E402
from agent.backends.llama_cpp import LlamaCppBackend  # noqa: E402
from agent.config import load_settings  # noqa: E402
from agent.environment import FunctionEnv  # noqa: E402
from agent.events import ModelReplied, PromptSent, Task, TokenDelta  # noqa: E402
from agent.session import AgentSession  # noqa: E402

TASK = Task(
    text="Write a Python function merge_sorted(a, b) that merges two sorted lists into one "
    "sorted list without using sort(). Explain the approach after the code.",
    tests=["assert merge_sorted([1, 3], [2]) == [1, 2, 3]"],
)


def agent_run(backend: LlamaCppBackend, settings, sessions: Path) -> tuple[float, int, str, list]:
    """Seconds from the episode's start to its ModelReplied, tokens, text, messages sent."""
    # Generate the whole reply (no stop at the end of the code block) so both paths match.
    env = FunctionEnv(stop_after_code=False)
    session = AgentSession(TASK, backend, settings, purpose="eval", env=env, sessions_dir=sessions)
    started = time.perf_counter()
    sent: list = []
    events = session.start()
    for event in events:
        if isinstance(event, PromptSent):
            sent = event.messages
        elif isinstance(event, TokenDelta):
            continue
        elif isinstance(event, ModelReplied):
            elapsed = time.perf_counter() - started
            events.close()  # type: ignore[attr-defined] - no need to run the sandbox
            session.close()
            return elapsed, event.completion_tokens, event.text, sent
    raise RuntimeError("the episode ended without a reply")


def raw_run(backend: LlamaCppBackend, messages: list, max_tokens: int) -> tuple[float, str]:
    """Seconds for llama-cpp-python alone to stream the same reply, and its text."""
    started = time.perf_counter()
    pieces = []
    for chunk in backend.llm.create_chat_completion(
        messages=[m.model_dump() for m in messages],
        temperature=0.0,
        top_p=1.0,
        max_tokens=max_tokens,
        seed=0,
        stream=True,
    ):
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            pieces.append(text)
    return time.perf_counter() - started, "".join(pieces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--machine", default="cpu-2c")
    parser.add_argument("--record", action="store_true", help="append a row to docs/BENCHMARKS.md")
    args = parser.parse_args()

    settings, _ = load_settings(
        {"model": args.model, "max_tokens": args.max_tokens, "n_ctx": args.n_ctx, "max_turns": 1}
    )
    backend = make_backend(settings)
    if not isinstance(backend, LlamaCppBackend):
        parser.error("the benchmark compares against llama-cpp-python: use a GGUF model")
    with tempfile.TemporaryDirectory() as tmp:
        sessions = Path(tmp)
        # Warm-up: load, fill the prompt cache, and take the exact messages the agent sends.
        _, tokens, _, messages = agent_run(backend, settings, sessions)
        raw_run(backend, messages, args.max_tokens)
        agent_times, raw_times, same = [], [], 0
        for rep in tqdm(range(args.reps), desc="agent vs raw", unit="pair"):
            if rep % 2:  # alternate which path goes first
                agent_s_, _, agent_text, _ = agent_run(backend, settings, sessions)
                raw_s_, raw_text = raw_run(backend, messages, args.max_tokens)
            else:
                raw_s_, raw_text = raw_run(backend, messages, args.max_tokens)
                agent_s_, _, agent_text, _ = agent_run(backend, settings, sessions)
            agent_times.append(agent_s_)
            raw_times.append(raw_s_)
            same += agent_text == raw_text
    agent_s, raw_s = statistics.median(agent_times), statistics.median(raw_times)
    result = {
        "model": backend.identity.key,
        "completion_tokens": tokens,
        "agent_tok_s": round(tokens / agent_s, 2),
        "raw_tok_s": round(tokens / raw_s, 2),
        "ratio": round(raw_s / agent_s, 4),
        "agent_s": [round(t, 3) for t in agent_times],
        "raw_s": [round(t, 3) for t in raw_times],
        "identical_replies": f"{same}/{args.reps}",
        "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))
    if args.record:
        row = (
            f"| {date.today().isoformat()} | {args.machine} | `bench/bench_generation.py "
            f"--model {args.model} --max-tokens {args.max_tokens} --reps {args.reps}` | "
            f"agent {result['agent_tok_s']} tok/s ({tokens} tokens, median of {args.reps}) | "
            f"raw llama-cpp-python {result['raw_tok_s']} tok/s | {result['ratio']:.3f} |\n"
        )
        with open(ROOT / "docs" / "BENCHMARKS.md", "a", encoding="utf-8") as fh:
            fh.write(row)
        print("recorded in docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
