"""Load the datasets `fixloop data build` writes, as the rows TRL's trainers take.

- sft.jsonl  ``{"messages"}`` -> prompt (all but the last message) and completion (the
  assistant's last): SFTTrainer puts the loss on the completion.
- leti.jsonl ``{"task", "program", "reward", "feedback"}`` (or ``{"text"}``) -> one chat
  conversation (reward token and feedback span open the user turn), or one text: LM loss
  on all of it.
- repair.jsonl ``{"prompt", "completion"}`` (SFT --with-repair): the conversation up to
  the repairing reply, and the reply.
- ilf.jsonl ``{"prompt", "completion"}``, dpo.jsonl ``{"prompt", "chosen", "rejected"}``,
  kto.jsonl ``{"prompt", "completion", "label"}``: as they are.

A prompt or completion is a string or a list of chat messages (TRL's conversational form,
rendered with the tokenizer's chat template). One dataset has one form: if any row is
conversational, a string prompt becomes the user's turn and a string answer the assistant's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from agent.errors import FixloopError
from agent.prompts import code_reply
from trainer.data.formats import leti_head
from trainer.train.config import REPAIR_FILE, Method, dataset_file

REWARDS = ("good", "bad")

MANIFEST_NAMES = ("manifest.json",)

Row = dict[str, Any]

# The fields that hold text or messages, per method (KTO's label is a bool).
CONTENT_FIELDS: dict[Method, tuple[str, ...]] = {
    "sft": ("prompt", "completion"),
    "ilf": ("prompt", "completion"),
    "leti": (),
    "dpo": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion"),
}


class DataError(FixloopError, ValueError):
    """A dataset that cannot be trained on; the message names the file, line and fix."""


def manifest_info(data_dir: Path) -> tuple[Path | None, str]:
    """The data manifest and its sha256 (of the dataset file itself if there is no manifest)."""
    for name in MANIFEST_NAMES:
        path = data_dir / name
        if path.is_file():
            return path, hashlib.sha256(path.read_bytes()).hexdigest()
    return None, ""


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, dict) and "role" in m and "content" in m for m in value
    )


def _messages(value: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Only role and content: one dataset needs one message schema."""
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]


def _content(row: dict[str, Any], key: str, where: str) -> str | list[dict[str, str]]:
    if key not in row:
        raise DataError(f"{where}: missing field {key!r} (fields: {', '.join(sorted(row))}).")
    value = row[key]
    if isinstance(value, str):
        return value
    if _is_messages(value):
        return _messages(value)
    raise DataError(
        f"{where}: field {key!r} must be a string or a list of {{role, content}} messages."
    )


def parse_row(method: Method, row: dict[str, Any], where: str) -> Row:
    """One JSONL row as the TRL row its method trains on."""
    if method == "leti":
        task, program = row.get("task"), row.get("program")
        if isinstance(task, str) and isinstance(program, str) and row.get("reward") in REWARDS:
            # Chat-shaped, as the agent prompts at inference: its system prompt, the task
            # (the backend puts `<|good|>` before the first user message) and the program as
            # the agent parses it. LeTI's LM loss covers all of it.
            head = leti_head(row["reward"] == "good", str(row.get("feedback") or ""))
            reply = code_reply(program) if row.get("fenced") else program
            system = row.get("system")
            return {
                "messages": [
                    *([{"role": "system", "content": system}] if isinstance(system, str) else []),
                    {"role": "user", "content": head + task},
                    {"role": "assistant", "content": reply},
                ]
            }
        text = row.get("text")
        if not isinstance(text, str) or not text:
            raise DataError(f"{where}: a LeTI row needs a non-empty string field 'text'.")
        return {"text": text}
    if method == "sft":
        messages = row.get("messages")
        if not _is_messages(messages) or not messages:
            raise DataError(f"{where}: an SFT row needs 'messages': a list of {{role, content}}.")
        if messages[-1]["role"] != "assistant":
            raise DataError(f"{where}: the last message must be the assistant's (the target).")
        messages = _messages(messages)
        return {"prompt": messages[:-1], "completion": messages[-1:]}
    out: Row = {key: _content(row, key, where) for key in CONTENT_FIELDS[method]}
    if method == "kto":
        label = row.get("label")
        if not isinstance(label, bool):
            raise DataError(f"{where}: a KTO row needs a boolean 'label' (true = desirable).")
        out["label"] = label
    return out


def _one_form(method: Method, rows: list[Row]) -> list[Row]:
    """Conversational everywhere if any row is."""
    fields = CONTENT_FIELDS[method]
    if any(isinstance(r[f], list) for r in rows for f in fields):
        for r in rows:
            for f in fields:
                if isinstance(r[f], str):
                    r[f] = [{"role": "user" if f == "prompt" else "assistant", "content": r[f]}]
    return rows


def load_examples(
    data_dir: Path,
    method: Method,
    limit: int | None = None,
    split: str | None = "train",
    *,
    with_repair: bool = False,
    preferences: bool = False,
) -> list[Row]:
    """The rows of `<data_dir>/<method>.jsonl` in `split` (rows without one count), validated.

    `fixloop data build` marks each row's split by task; `split=None` takes every row.
    `with_repair` (SFT) appends repair.jsonl's trajectories; a missing or empty one adds none.
    `preferences` (DPO) reads the preference pairs, pref_dpo.jsonl, instead of dpo.jsonl.
    """
    name = dataset_file(method, preferences=preferences)
    path = data_dir / name
    if not path.is_file():
        present = sorted(p.name for p in data_dir.glob("*.jsonl")) if data_dir.is_dir() else []
        raise DataError(
            f"no {name} in {data_dir} (found: {', '.join(present) or 'nothing'}). "
            "Run `fixloop data build` first, or pick a --method whose data exists."
        )
    rows = [parse_row(method, row, where) for row, where in _read(path, split)]
    if with_repair and (data_dir / REPAIR_FILE).is_file():
        rows += [
            {key: _content(row, key, where) for key in ("prompt", "completion")}
            for row, where in _read(data_dir / REPAIR_FILE, split)
        ]
    rows = rows[:limit] if limit is not None else rows
    if not rows:
        which = f" in split {split!r}" if split else ""
        raise DataError(
            f"{path} has no rows{which}. Log some sessions and run `fixloop data build`."
        )
    if len({"messages" in r for r in rows}) > 1:  # LeTI: conversations or texts, not both
        raise DataError(f"{path} mixes chat rows and text rows; rebuild it (`fixloop data build`).")
    return _one_form(method, rows)


def _read(path: Path, split: str | None) -> list[tuple[dict[str, Any], str]]:
    """(row, "file:line") of each JSON object in `split` (rows without one count)."""
    out = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg}).") from exc
            if not isinstance(row, dict):
                raise DataError(f"{where}: each line must be a JSON object.")
            if split is None or row.get("split", split) == split:
                out.append((row, where))
    return out


def files_sha256(paths: list[Path]) -> str:
    """One hash of the dataset files a run reads (the file's own for a single one)."""
    present = [p for p in paths if p.is_file()]
    if len(present) == 1:
        return file_sha256(present[0])
    digest = hashlib.sha256()
    for p in present:
        digest.update(p.name.encode() + b"\0" + file_sha256(p).encode())
    return digest.hexdigest()
