"""Load the datasets `fixloop data build` writes and turn them into token ids.

Formats (TRL's, one JSON object per line):

- sft.jsonl  ``{"messages": [...]}``: loss on the last assistant message.
- leti.jsonl ``{"text": "<|good|>...<|/lang_feedback|>task program"}``: plain LM loss on
  the whole text (LeTI conditions on the reward token and the feedback span).
- ilf.jsonl  ``{"prompt": ..., "completion": ...}``: loss on the completion (the refinement).
- dpo.jsonl  ``{"prompt": ..., "chosen": ..., "rejected": ...}``.
- kto.jsonl  ``{"prompt": ..., "completion": ..., "label": true|false}``.

A prompt or completion may be a string or a list of chat messages (TRL's conversational
form); conversations are rendered with the tokenizer's chat template.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import FixloopError
from trainer.data.formats import leti_head
from trainer.train.config import DATA_FILES, Method

REWARDS = ("good", "bad")

MANIFEST_NAMES = ("manifest.json",)

Content = str | list[dict[str, str]]


class DataError(FixloopError, ValueError):
    """A dataset that cannot be trained on; the message names the file, line and fix."""


@dataclass(frozen=True)
class LMExample:
    """Loss on `completion` only; an empty prompt means loss on the whole text."""

    prompt: Content
    completion: Content


@dataclass(frozen=True)
class PairExample:
    prompt: Content
    chosen: Content
    rejected: Content


@dataclass(frozen=True)
class KTOExample:
    prompt: Content
    completion: Content
    label: bool


Example = LMExample | PairExample | KTOExample


@dataclass(frozen=True)
class Encoded:
    """One tokenized sequence; `labels` is -100 where no loss is taken."""

    input_ids: list[int]
    labels: list[int]

    @property
    def n_loss_tokens(self) -> int:
        return sum(1 for x in self.labels if x != -100)


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


def _content(row: dict[str, Any], key: str, where: str) -> Content:
    if key not in row:
        raise DataError(f"{where}: missing field {key!r} (fields: {', '.join(sorted(row))}).")
    value = row[key]
    if isinstance(value, str) or _is_messages(value):
        return value
    raise DataError(
        f"{where}: field {key!r} must be a string or a list of {{role, content}} messages."
    )


def parse_row(method: Method, row: dict[str, Any], where: str) -> Example:
    """One JSONL row as the example type its method trains on."""
    if method == "leti":
        task, program = row.get("task"), row.get("program")
        if isinstance(task, str) and isinstance(program, str) and row.get("reward") in REWARDS:
            # Chat-shaped, as the agent prompts at inference (the backend puts `<|good|>`
            # before the first user message); LeTI's LM loss covers all of it.
            head = leti_head(row["reward"] == "good", str(row.get("feedback") or ""))
            return LMExample(
                prompt="",
                completion=[
                    {"role": "user", "content": head + task},
                    {"role": "assistant", "content": program},
                ],
            )
        text = row.get("text")
        if not isinstance(text, str) or not text:
            raise DataError(f"{where}: a LeTI row needs a non-empty string field 'text'.")
        return LMExample(prompt="", completion=text)
    if method == "sft":
        messages = row.get("messages")
        if not _is_messages(messages) or not messages:
            raise DataError(f"{where}: an SFT row needs 'messages': a list of {{role, content}}.")
        if messages[-1]["role"] != "assistant":
            raise DataError(f"{where}: the last message must be the assistant's (the target).")
        return LMExample(prompt=messages[:-1], completion=[messages[-1]])
    if method == "ilf":
        return LMExample(_content(row, "prompt", where), _content(row, "completion", where))
    if method == "dpo":
        return PairExample(
            _content(row, "prompt", where),
            _content(row, "chosen", where),
            _content(row, "rejected", where),
        )
    label = row.get("label")
    if not isinstance(label, bool):
        raise DataError(f"{where}: a KTO row needs a boolean 'label' (true = desirable).")
    return KTOExample(_content(row, "prompt", where), _content(row, "completion", where), label)


def load_examples(
    data_dir: Path, method: Method, limit: int | None = None, split: str | None = "train"
) -> list[Example]:
    """The rows of `<data_dir>/<method>.jsonl` in `split` (rows without one count), validated.

    `fixloop data build` marks each row's split by task; `split=None` takes every row.
    """
    path = data_dir / DATA_FILES[method]
    if not path.is_file():
        present = sorted(p.name for p in data_dir.glob("*.jsonl")) if data_dir.is_dir() else []
        raise DataError(
            f"no {DATA_FILES[method]} in {data_dir} (found: {', '.join(present) or 'nothing'}). "
            "Run `fixloop data build` first, or pick a --method whose data exists."
        )
    examples: list[Example] = []
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
            if split is not None and row.get("split", split) != split:
                continue
            examples.append(parse_row(method, row, where))
            if limit is not None and len(examples) >= limit:
                break
    if not examples:
        which = f" in split {split!r}" if split else ""
        raise DataError(
            f"{path} has no rows{which}. Log some sessions and run `fixloop data build`."
        )
    return examples


# --- rendering and tokenizing ---------------------------------------------------------


def render(tokenizer: Any, prompt: Content, completion: Content) -> tuple[str, str]:
    """(prompt text, completion text), conversations through the chat template.

    No prompt and a conversation as the completion: the whole conversation is the target.
    """
    if prompt == "" and isinstance(completion, list):
        if getattr(tokenizer, "chat_template", None) is None:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in completion)
        else:
            text = tokenizer.apply_chat_template(completion, tokenize=False)
        return "", text
    if isinstance(prompt, list) or isinstance(completion, list):
        p_msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        c_msgs = (
            completion
            if isinstance(completion, list)
            else [{"role": "assistant", "content": completion}]
        )
        if getattr(tokenizer, "chat_template", None) is None:
            p_text = "".join(f"{m['role']}: {m['content']}\n" for m in p_msgs) + "assistant: "
            c_text = "".join(m["content"] for m in c_msgs)
            return p_text, c_text + (tokenizer.eos_token or "")
        p_text = tokenizer.apply_chat_template(p_msgs, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(p_msgs + c_msgs, tokenize=False)
        if full.startswith(p_text):
            return p_text, full[len(p_text) :]
        return p_text, "".join(m["content"] for m in c_msgs) + (tokenizer.eos_token or "")
    return prompt, completion + (tokenizer.eos_token or "")


def encode(tokenizer: Any, prompt: Content, completion: Content, max_len: int) -> Encoded:
    """Token ids with labels on the completion only; the prompt is cut from the left to fit."""
    p_text, c_text = render(tokenizer, prompt, completion)
    p_ids: list[int] = tokenizer(p_text, add_special_tokens=True)["input_ids"] if p_text else []
    c_ids: list[int] = tokenizer(c_text, add_special_tokens=not p_text)["input_ids"]
    c_ids = c_ids[:max_len]
    room = max_len - len(c_ids)
    p_ids = p_ids[max(0, len(p_ids) - room) :] if room > 0 else []
    return Encoded(p_ids + c_ids, [-100] * len(p_ids) + c_ids)
