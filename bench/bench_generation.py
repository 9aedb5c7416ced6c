"""Generation throughput through the agent versus raw llama-cpp-python, same prompt and model.

The agent path is a real `AgentSession.start()` (header written, prompt counted
and fitted, tokens streamed as events, reply logged) timed from the start of
the episode to its `ModelReplied` event. The raw path is
`Llama.create_chat_completion(stream=True)` on the same loaded model with the
exact messages the agent sent and the same greedy settings, so both produce the
same tokens (checked: `identical_replies`). After a warm-up (which also fills
llama.cpp's prompt cache for both) the paths alternate, and each pair gives a
ratio raw_time / agent_time; the figure is the median of those ratios, in wall
time and in process CPU time (steadier when other work shares the cores).
Goal: ratio >= 0.95.

    .venv/bin/python bench/bench_generation.py --model smollm2-135m --reps 6 --record
"""

from __future__ import annotations

import argparse
import json
import os
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
from agent.config import Settings, load_settings  # noqa: E402
from agent.environment import FunctionEnv  # noqa: E402
from agent.events import ChatMessage, ModelReplied, PromptSent, Task, TokenDelta  # noqa: E402
from agent.session import AgentSession  # noqa: E402
from bench.benchmarks_md import add_rows  # noqa: E402

TASK = Task(
    text="Write a Python function merge_sorted(a, b) that merges two sorted lists into one "
    "sorted list without using sort(). Explain the approach after the code.",
    tests=["assert merge_sorted([1, 3], [2]) == [1, 2, 3]"],
)


class Timing:
    """Wall and process CPU seconds of one run, with what it produced."""

    def __init__(self, wall: float, cpu: float, text: str) -> None:
        self.wall, self.cpu, self.text = wall, cpu, text


def agent_run(
    backend: LlamaCppBackend, settings: Settings, sessions: Path
) -> tuple[Timing, int, list[ChatMessage]]:
    """From the episode's start to its ModelReplied; also the token count and messages sent."""
    # Generate the whole reply (no stop at the end of the code block) so both paths match.
    env = FunctionEnv(stop_after_code=False)
    session = AgentSession(TASK, backend, settings, purpose="eval", env=env, sessions_dir=sessions)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    sent: list[ChatMessage] = []
    events = session.start()
    for event in events:
        if isinstance(event, PromptSent):
            sent = event.messages
        elif isinstance(event, TokenDelta):
            continue
        elif isinstance(event, ModelReplied):
            timing = Timing(time.perf_counter() - wall0, time.process_time() - cpu0, event.text)
            events.close()  # type: ignore[attr-defined] - no need to run the sandbox
            session.close()
            return timing, event.completion_tokens, sent
    raise RuntimeError("the episode ended without a reply")


def raw_run(backend: LlamaCppBackend, messages: list[ChatMessage], max_tokens: int) -> Timing:
    """llama-cpp-python alone streaming the same reply."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
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
    return Timing(time.perf_counter() - wall0, time.process_time() - cpu0, "".join(pieces))


SECTION = "## Generation throughput"
SECTION_INTRO = """
Measured by `bench/bench_generation.py` (see its docstring): one reply generated through
the agent (`AgentSession.start()` up to `ModelReplied`: header and events logged, prompt
counted, tokens streamed as events) against llama-cpp-python's own
`create_chat_completion(stream=True)` on the same loaded model, messages and greedy
settings. Ratio = raw time / agent time, median of alternating pairs (goal >= 0.95).

| date | machine | command | figure | reference | ratio |
|---|---|---|---|---|---|
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--reps", type=int, default=6)
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
    agent: list[Timing] = []
    raw: list[Timing] = []
    with tempfile.TemporaryDirectory() as tmp:
        sessions = Path(tmp)
        # Warm-up: load, fill the prompt cache, and take the exact messages the agent sends.
        _, tokens, messages = agent_run(backend, settings, sessions)
        raw_run(backend, messages, args.max_tokens)
        for rep in tqdm(range(args.reps), desc="agent vs raw", unit="pair"):
            if rep % 2:  # alternate which path goes first
                agent.append(agent_run(backend, settings, sessions)[0])
                raw.append(raw_run(backend, messages, args.max_tokens))
            else:
                raw.append(raw_run(backend, messages, args.max_tokens))
                agent.append(agent_run(backend, settings, sessions)[0])
    same = sum(a.text == r.text for a, r in zip(agent, raw, strict=True))
    wall_ratio = statistics.median(r.wall / a.wall for a, r in zip(agent, raw, strict=True))
    cpu_ratio = statistics.median(r.cpu / a.cpu for a, r in zip(agent, raw, strict=True))
    agent_wall = statistics.median(a.wall for a in agent)
    raw_wall = statistics.median(r.wall for r in raw)
    result = {
        "model": backend.identity.key,
        "completion_tokens": tokens,
        "n_threads": backend.llm.n_threads,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "agent_tok_s": round(tokens / agent_wall, 2),
        "raw_tok_s": round(tokens / raw_wall, 2),
        "ratio_wall": round(wall_ratio, 4),
        "ratio_cpu": round(cpu_ratio, 4),
        "identical_replies": f"{same}/{args.reps}",
        "agent_wall_s": [round(a.wall, 3) for a in agent],
        "raw_wall_s": [round(r.wall, 3) for r in raw],
        "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))
    if args.record:
        row = (
            f"| {date.today().isoformat()} | {args.machine} (load {result['load_avg_1m']}) | "
            f"`bench/bench_generation.py --model {args.model} --max-tokens {args.max_tokens} "
            f"--reps {args.reps}` | through the agent: {result['agent_tok_s']} tok/s "
            f"({tokens} tokens, {same}/{args.reps} replies identical) | raw llama-cpp-python "
            f"create_chat_completion(stream=True): {result['raw_tok_s']} tok/s | "
            f"{wall_ratio:.3f} wall, {cpu_ratio:.3f} CPU (median of paired runs) |\n"
        )
        add_rows(SECTION, SECTION_INTRO, [row])
        print("recorded in docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
