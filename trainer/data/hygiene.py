"""Keep training data clean: no evaluation tasks, no near-duplicates, nothing over budget.

- :class:`EvalGuard` refuses any task an evaluation scores: MBPP's test ids
  11-510, MBPP's validation ids 511-600 (the promotion gate's held-out tasks),
  every HumanEval task, any task whose split is "test" or "validation", and
  whatever `evals.suites.is_heldout` holds out (the user's held-out tasks).
- :func:`deduplicate` drops exact duplicates (after whitespace normalization)
  and near-duplicates (difflib similarity over the part of a row that varies,
  compared only among rows of the same task and the same label).
- :func:`apply_budget` drops rows longer than a token budget, counted with the
  model's tokenizer when one is given, else a deterministic proxy.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.errors import FixloopError
from agent.events import Task
from evals.suites import MBPP_SPLITS, is_heldout, mbpp_number, mbpp_split_of

Row = dict[str, Any]

# Splits an evaluation scores. "validation" too: the promotion gate (trainer/gate.py)
# scores candidates on it, so training on it would inflate the comparison that decides.
NEVER_TRAIN_SPLITS: dict[str, str] = {
    "test": "which fixloop evaluates on",
    "validation": "which the promotion gate evaluates on",
}


class HeldOutTaskError(FixloopError, ValueError):
    """A task from an evaluation test split was about to become training data."""


@dataclass
class EvalGuard:
    """Says why a task must never be trained on, or None when it may be."""

    # The eval harness's own rule (which also holds out 1 in 5 of the user's tasks).
    extra: Callable[[Task], bool] | None = is_heldout

    def reason(self, task: Task) -> str | None:
        text = " ".join(task.text.split())
        name = task.task_id or repr(text if len(text) <= 60 else text[:57] + "...")
        number = mbpp_number(task.task_id, task.suite)
        split = mbpp_split_of(number) if number is not None else None
        if split in NEVER_TRAIN_SPLITS:
            ids = MBPP_SPLITS[split]
            return (
                f"task {name} is in MBPP's {split} split (ids {ids.start}-{ids.stop - 1}), "
                f"{NEVER_TRAIN_SPLITS[split]}"
            )
        ident = (task.task_id or "").lower()
        if (task.suite or "").lower() == "humaneval" or ident.startswith("humaneval"):
            return f"task {name} is a HumanEval task; HumanEval is evaluation-only"
        if (task.split or "").lower() in NEVER_TRAIN_SPLITS:
            return f"task {name} comes from the {task.split} split of suite {task.suite or '?'}"
        if self.extra is not None and self.extra(task):
            return f"task {name} is held out by the eval harness (evals.suites.is_heldout)"
        return None

    def check(self, task: Task) -> None:
        """Raise :class:`HeldOutTaskError` for a task from an evaluation test split."""
        why = self.reason(task)
        if why is not None:
            raise HeldOutTaskError(
                f"refusing to train on it: {why}. Evaluation tasks never go into training "
                "data; train on MBPP's train split (ids 601-974) or your own sessions."
            )


# ---------------------------------------------------------------- row text


def _join_messages(messages: Sequence[dict[str, str]]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def row_text(fmt: str, row: Row) -> str:
    """All the text a row trains on (what the token budget counts)."""
    if fmt == "leti":
        return row["text"]
    if fmt == "ilf":
        return row["prompt"] + row["completion"]
    if fmt in ("sft", "episodes"):
        return _join_messages(row["messages"])
    if fmt in ("dpo", "pref_dpo"):
        return "\n".join(_join_messages(row[k]) for k in ("prompt", "chosen", "rejected"))
    if fmt in ("kto", "repair"):
        return _join_messages(row["prompt"]) + "\n" + _join_messages(row["completion"])
    raise ValueError(f"unknown format {fmt!r}")


def row_varying_text(fmt: str, row: Row) -> str:
    """The part of a row that differs between rows of one task (near-duplicate check)."""
    if fmt == "leti":
        return f"{row['feedback']}\n{row['program']}"
    if fmt == "ilf":
        return f"{row['old_code']}\n{row['feedback']}\n{row['completion']}"
    if fmt in ("sft", "episodes"):
        first_reply = next(
            (i for i, m in enumerate(row["messages"]) if m["role"] == "assistant"),
            len(row["messages"]),
        )
        return _join_messages(row["messages"][first_reply:])
    if fmt in ("dpo", "pref_dpo"):
        return _join_messages(row["chosen"]) + "\n---\n" + _join_messages(row["rejected"])
    if fmt == "kto":
        return _join_messages(row["completion"])
    if fmt == "repair":  # the failed attempt and its feedback differ too, not only the fix
        return _join_messages([*row["prompt"][2:], *row["completion"]])
    raise ValueError(f"unknown format {fmt!r}")


def row_label(fmt: str, row: Row) -> str:
    """Rows are only near-duplicates of rows with the same label."""
    if fmt == "leti":
        return str(row["reward"])
    if fmt == "ilf":
        return str(row["kind"])
    if fmt == "kto":
        return str(row["label"])
    if fmt == "pref_dpo":
        return str(row["preference"])
    if fmt == "episodes":
        return f"{row['reward']}/{row['passed']}"
    return ""


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class DedupStats:
    exact: int = 0
    near: int = 0

    @property
    def removed(self) -> int:
        return self.exact + self.near


def deduplicate(
    fmt: str, rows: Sequence[Row], threshold: float = 0.95
) -> tuple[list[Row], DedupStats]:
    """Drop exact and near-duplicate rows, keeping the first of each.

    Near-duplicates: same task, same label, and the varying part (the program,
    the completion, the replies) at least `threshold` similar (difflib ratio,
    whitespace normalized). `threshold` >= 1 turns near-duplicate removal off.
    """
    stats = DedupStats()
    kept: list[Row] = []
    seen_exact: set[str] = set()
    groups: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        exact = _normalize(json.dumps(_content_only(row), sort_keys=True))
        if exact in seen_exact:
            stats.exact += 1
            continue
        varying = _normalize(row_varying_text(fmt, row))
        group = groups.setdefault((str(row.get("task_key")), row_label(fmt, row)), [])
        if threshold < 1 and any(_similar(varying, other, threshold) for other in group):
            stats.near += 1
            continue
        seen_exact.add(exact)
        group.append(varying)
        kept.append(row)
    return kept, stats


_METADATA = frozenset(
    {
        "session_id",
        "rejected_session_id",
        "model",
        "split",
        "turn",
        "source",
        "why",
        "chosen_why",
        "rejected_why",
        "repaired_after",
    }
)


def _content_only(row: Row) -> Row:
    return {k: v for k, v in row.items() if k not in _METADATA}


def _similar(a: str, b: str, threshold: float) -> bool:
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return (
        matcher.real_quick_ratio() >= threshold
        and matcher.quick_ratio() >= threshold
        and matcher.ratio() >= threshold
    )


# ---------------------------------------------------------------- token budget


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class ProxyTokenCounter:
    """A deterministic stand-in for a BPE tokenizer (no model needed).

    Each run of letters costs one token per 4 characters (at least one), each
    digit and each other non-space character one token, each newline one token.
    On code this is within about 20% of the Qwen2.5 tokenizer, erring high.
    """

    name = "proxy"
    _pieces = re.compile(r"[A-Za-z_]+|\n|\S")

    def count(self, text: str) -> int:
        total = 0
        for piece in self._pieces.findall(text):
            if piece[0].isalpha() or piece[0] == "_":
                total += max(1, math.ceil(len(piece) / 4))
            else:
                total += 1
        return total


class HFTokenCounter:
    """The model's own tokenizer, through transformers.

    `spec` is a tokenizer or checkpoint directory, a GGUF file (its embedded
    tokenizer), or a registered fixloop model name (its GGUF, provisioned).
    """

    def __init__(self, spec: str | Path, cache_dir: Path | None = None) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:  # the train extra is not installed
            raise RuntimeError(
                "counting with a model tokenizer needs transformers: pip install 'fixloop[train]'"
            ) from exc
        self.name = str(spec)
        directory, gguf_file = _tokenizer_location(spec, cache_dir)
        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        self._tokenizer = AutoTokenizer.from_pretrained(str(directory), **kwargs)

    def count(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])


def _tokenizer_location(spec: str | Path, cache_dir: Path | None) -> tuple[Path, str | None]:
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name
    if path.is_dir():
        return path, None
    from agent import paths
    from agent.models import ModelError, builtin_models, ensure_model

    models = builtin_models()
    if str(spec) not in models:
        raise ValueError(
            f"--tokenizer {spec}: not a tokenizer directory, a .gguf file or a model name "
            f"({', '.join(sorted(models))})"
        )
    try:
        gguf = ensure_model(models[str(spec)], cache_dir or paths.default_cache_dir())
    except ModelError as exc:
        raise ValueError(f"--tokenizer {spec}: {exc}") from exc
    return gguf.parent, gguf.name


def apply_budget(
    fmt: str, rows: Sequence[Row], counter: TokenCounter, max_tokens: int
) -> tuple[list[Row], int]:
    """Rows within `max_tokens` (by `counter`), and how many were dropped."""
    kept = [row for row in rows if counter.count(row_text(fmt, row)) <= max_tokens]
    return kept, len(rows) - len(kept)
