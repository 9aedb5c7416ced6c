"""Throughput past one stream: aggregate tokens/s of `fixloop eval --workers N` against a
llama.cpp server, for N = 1, 2, 4, against the in-process backend (issue 18, item 3).

Each configuration runs the same tasks through the agent's own loop (`evals.runner.run_suite`,
purpose "eval", fresh results and sessions directories) and is timed from the first episode
to the last: aggregate tok/s = completion tokens / wall seconds. The in-process row is the
default backend (llama.cpp in this process, one generation at a time, `--workers 1`); each
server row starts a server with N slots, runs N workers against it, and stops it.

The server is llama.cpp's `llama-server` when `--server-bin PATH` is given (N slots decoded
together: the configuration that can beat one stream), else llama-cpp-python's
`llama_cpp.server` (one generation at a time: N workers then only overlap the sandbox and
the HTTP round trips with generation). Threads: `--threads` for both sides (default: the
cores).

    .venv/bin/python bench/bench_workers.py --model qwen2.5-coder-0.5b --limit 16 \\
        --server-bin ~/llama.cpp/build/bin/llama-server --workers 1 2 4

Prints one markdown row per configuration for docs/BENCHMARKS.md, and writes the figures to
`--json` when given. Do not run it beside another model process: it measures the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.config import Settings, load_settings  # noqa: E402
from agent.events import Task  # noqa: E402
from evals.llama_server import llama_server  # noqa: E402
from evals.runner import run_suite  # noqa: E402
from evals.suites import load_suite  # noqa: E402


def gguf_of(settings: Settings) -> Path:
    """The GGUF file `--model` names (a path, or a registered model, provisioned)."""
    as_path = Path(settings.model).expanduser()
    if as_path.suffix == ".gguf":
        return as_path
    from agent.models import Registry, ensure_model

    return ensure_model(Registry(settings.data_dir).get(settings.model), settings.cache_dir)


def measure(
    name: str,
    tasks: list[Task],
    settings: Settings,
    *,
    workers: int,
    max_turns: int,
    out: Path,
) -> dict[str, Any]:
    """One configuration: run the tasks, return its figures."""
    cfg = settings.model_copy(update={"sessions_dir": out / "sessions"})
    started = time.perf_counter()
    result = run_suite(
        tasks,
        cfg,
        max_turns=max_turns,
        workers=workers,
        out_dir=out,
        progress=True,
        label=name,
    )
    wall = time.perf_counter() - started
    return {
        "config": name,
        "workers": workers,
        "episodes": result.episodes,
        "passed": result.passed.count,
        "completion_tokens": result.completion_tokens,
        "prompt_tokens": result.prompt_tokens,
        "prompt_tokens_evaluated": result.prompt_tokens_evaluated,
        "wall_s": round(wall, 2),
        "aggregate_tok_s": round(result.completion_tokens / wall, 2) if wall > 0 else 0.0,
        "per_stream_tok_s": result.tokens_per_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b", help="registered name or .gguf")
    ap.add_argument("--suite", default="mbpp")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--limit", type=int, default=16, help="first N tasks")
    ap.add_argument("--max-turns", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--server-bin", help="llama-server binary (default: llama_cpp.server)")
    ap.add_argument("--threads", type=int, help="threads for the model (both sides)")
    ap.add_argument("--n-ctx", type=int, default=4096, help="context per slot")
    ap.add_argument("--no-in-process", action="store_true", help="skip the in-process row")
    ap.add_argument("--json", type=Path, help="write the figures here")
    a = ap.parse_args()

    overrides: dict[str, Any] = {"model": a.model, "n_ctx": a.n_ctx}
    if a.threads:
        overrides["n_threads"] = a.threads
    settings, _ = load_settings(overrides)
    tasks = load_suite(a.suite, split=a.split, limit=a.limit)
    gguf = gguf_of(settings)
    server = Path(a.server_bin).name if a.server_bin else "llama_cpp.server"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        base = Path(tmp)
        if not a.no_in_process:
            rows.append(
                measure(
                    "in-process",
                    tasks,
                    settings,
                    workers=1,
                    max_turns=a.max_turns,
                    out=base / "in-process",
                )
            )
            print(rows[-1], flush=True)
        for n in a.workers:
            log = base / f"server-{n}.log"
            with llama_server(
                gguf,
                n_ctx=a.n_ctx,
                parallel=n,
                threads=a.threads,
                binary=a.server_bin,
                alias=settings.model,
                log_path=log,
            ) as url:
                remote = settings.model_copy(update={"base_url": url})
                rows.append(
                    measure(
                        f"{server} x{n}",
                        tasks,
                        remote,
                        workers=n,
                        max_turns=a.max_turns,
                        out=base / f"server-{n}",
                    )
                )
            print(rows[-1], flush=True)
    reference = next((r for r in rows if r["config"] == "in-process"), rows[0])
    machine = f"{platform.machine()} {os.cpu_count()} cores"
    print("\n| date | machine | configuration | tasks | tokens | wall | aggregate tok/s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["aggregate_tok_s"] / reference["aggregate_tok_s"] if reference else 0.0
        print(
            f"| {date.today()} | {machine} | {r['config']} (--workers {r['workers']}), "
            f"{a.model}, {a.suite} {a.split} first {a.limit}, {a.max_turns} turns | "
            f"{r['episodes']} | {r['completion_tokens']:,} | {r['wall_s']:.0f} s | "
            f"{r['aggregate_tok_s']:.1f} | {ratio:.2f}x |"
        )
    if a.json:
        a.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
