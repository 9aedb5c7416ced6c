"""Where a model's evaluation episodes are kept for reuse: one directory per model weights,
generation settings and episode code, so that a later evaluation with all three unchanged
reads them back instead of running the model again.

The promotion gate evaluates the current model on every retrain; on MBPP validation that
is about 40 minutes of the 0.5B on two cores (docs/BENCHMARKS.md), half of the gate, spent
again on the same model, tasks and settings. Greedy episodes are reproducible on one
machine, so they are reused; anything that can change an episode is in the key:

- the model: its GGUF's and adapter's sha256 and the prompt prefix it is run with;
- the settings an episode depends on (turns, policy, sampling, context, limits, cache);
- the code that runs and scores an episode: a hash of every module of `agent` and
  `evals`, so an upgrade or a local edit never compares against stale episodes;
- the CPU and llama.cpp build (`agent.backends.llama_cpp.kernels`): a data directory that
  moves to another machine evaluates again instead of mixing two machines' episodes.

The results file inside (`evals.results_file`) checks its own header too, and a task
added since (a new session) is simply evaluated and appended.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from agent.hashing import feed_file

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.models import ModelSpec

# Settings that can change what an episode generates or how it is scored.
EPISODE_SETTINGS = (
    "n_ctx",
    "max_turns",
    "policy",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "prompt_cache",
    "llama_repack",
    "n_gpu_layers",
    "exec_timeout",
    "memory_mb",
)


@cache
def episode_code_digest() -> str:
    """sha256 of the source of every module that generates or scores an episode."""
    import agent
    import evals

    digest = hashlib.sha256()
    for package in (agent, evals):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root.parent)).encode())
            feed_file(digest, path)
    return digest.hexdigest()


def episodes_key(spec: ModelSpec, settings: Settings, preferences: list[str]) -> str:
    """A short hash of everything an evaluation episode of `spec` depends on."""
    from agent.backends.llama_cpp import kernels

    identity = {
        "model": [spec.sha256, spec.adapter_sha256, spec.lineage.get("inference_prefix")],
        "settings": {name: getattr(settings, name) for name in EPISODE_SETTINGS},
        "preferences": preferences,
        "code": episode_code_digest(),
        "kernels": None if settings.base_url else kernels(),
    }
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def episodes_dir(root: Path, spec: ModelSpec, settings: Settings, preferences: list[str]) -> Path:
    """`root`/NAME-KEY: the directory of `spec`'s episodes under these settings."""
    return root / f"{spec.name}-{episodes_key(spec, settings, preferences)}"
