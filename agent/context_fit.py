"""Fitting a conversation into the model's context window, never overflowing it."""

from __future__ import annotations

from dataclasses import dataclass

from agent.backends.base import Backend
from agent.events import ChatMessage, ContextTrimmed


@dataclass
class Fitted:
    messages: list[ChatMessage]
    prompt_tokens: int
    max_tokens: int
    trimmed: ContextTrimmed | None = None


def fit_context(
    messages: list[ChatMessage], backend: Backend, max_tokens: int, turn: int
) -> Fitted:
    """The messages to send so that prompt + completion fit in `backend.n_ctx`.

    Keeps the system message, the task and the latest exchange; drops the
    oldest repair exchanges first, then shortens the longest remaining
    message from its middle until the prompt leaves the reply at least
    min(max_tokens, n_ctx / 2) tokens, and lowers max_tokens to what is left.
    """
    n_ctx = backend.n_ctx
    before = backend.count_tokens(messages)
    if before + max_tokens <= n_ctx:
        return Fitted(list(messages), before, max_tokens)
    head, tail = list(messages[:2]), list(messages[2:])
    dropped = 0
    count = before
    while len(tail) > 2 and count + max_tokens > n_ctx:
        tail = tail[2:]
        dropped += 2
        count = backend.count_tokens(head + tail)
    kept = head + tail
    reserve = min(max_tokens, n_ctx // 2)  # the reply keeps at least this much room
    budget = n_ctx - reserve
    for _ in range(20):  # shorten the longest message (never the system one) until it fits
        if count <= budget:
            break
        longest = max(range(1, len(kept)), key=lambda i: len(kept[i].content))
        text = kept[longest].content
        chars_per_token = max(sum(len(m.content) for m in kept) / max(count, 1), 1.0)
        cut = min(int((count - budget + 24) * chars_per_token * 1.3), len(text) - 32)
        if cut <= 0:
            break
        keep_head = (len(text) - cut) // 2
        shortened = (
            text[:keep_head]
            + f"\n[... {cut} characters cut to fit the context ...]\n"
            + text[keep_head + cut :]
        )
        kept[longest] = ChatMessage(role=kept[longest].role, content=shortened)
        count = backend.count_tokens(kept)
    new_max = max(min(max_tokens, n_ctx - count), 1)
    trimmed = ContextTrimmed(
        turn=turn, dropped_messages=dropped, tokens_before=before, tokens_after=count, n_ctx=n_ctx
    )
    return Fitted(kept, count, new_max, trimmed)
