"""Copied tests out of training replies: the shown assert lines a reply repeats.

Replies often end with the task's own asserts, copied under a "# Test cases" comment. They
cost tokens at every attempt and teach nothing about the function; in the DPO pairs of
docs/BENCHMARKS.md, 77% of the chosen replies held them against 50% of the rejected, and
both DPO models learned to append them. `fixloop data build --strip-copied-tests` removes
them from the replies that are trained on (SFT, repair, DPO, KTO); the prompts are kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from agent.extract import normalize_code

REPLY_KEYS = ("completion", "chosen", "rejected")


def _is_copy(line: str, shown: set[str]) -> bool:
    """An assert line equal to a shown test up to formatting (the agent's normal form)."""
    text = line.strip()
    return text.startswith("assert") and normalize_code(text) in shown


def strip_copied_tests(reply: str, tests: Sequence[str]) -> str:
    """`reply` without the lines that repeat one of `tests` (formatting aside), and without
    the comment and blank lines left right above them; all other lines are kept as written."""
    shown = {normalize_code(t.strip()) for t in tests if t.strip()}
    if not shown:
        return reply
    lines = reply.split("\n")
    copied = [_is_copy(line, shown) for line in lines]
    if not any(copied):
        return reply
    kept: list[str] = []
    for line, is_copy in zip(lines, copied, strict=True):
        if is_copy:
            # A heading comment or blank lines right above the copied tests go with them.
            while kept and (not kept[-1].strip() or kept[-1].lstrip().startswith("#")):
                kept.pop()
            continue
        kept.append(line)
    out = "\n".join(kept)
    # A fence closed right after the removed lines stays closed on its own line.
    return re.sub(r"\n{2,}```", "\n```", out)


def strip_row(row: dict[str, Any], tests: Sequence[str]) -> dict[str, Any]:
    """The row with copied tests removed from its assistant replies (the last message of a
    `messages` row, every assistant message under completion, chosen and rejected)."""
    out = dict(row)
    for key in REPLY_KEYS:
        if isinstance(out.get(key), list):
            out[key] = [_strip_message(m, tests) for m in out[key]]
    if isinstance(out.get("messages"), list) and out["messages"]:
        *head, last = out["messages"]
        out["messages"] = [*head, _strip_message(last, tests)]
    return out


def _strip_message(message: dict[str, str], tests: Sequence[str]) -> dict[str, str]:
    if message.get("role") != "assistant":
        return message
    return {**message, "content": strip_copied_tests(message["content"], tests)}
