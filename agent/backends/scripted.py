"""A backend that replays canned replies: for tests of the loop's logic, never for users."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agent.backends.base import BackendError, StreamChunk
from agent.events import ChatMessage, ModelIdentity, SamplingParams

TOKENS_PER_MESSAGE = 4  # role markers and separators, as a chat template adds


@dataclass
class ScriptedCall:
    """One request the scripted backend answered, kept for assertions in tests."""

    messages: list[ChatMessage]
    params: SamplingParams
    response_format: dict[str, Any] | None


class ScriptedBackend:
    """Answers each request with the next reply from `replies`, streamed in small pieces.

    Token counts are whitespace-separated words (plus a few per message), which
    is deterministic and good enough to exercise context trimming. Running out
    of replies raises BackendError, so a test that expects fewer turns fails.

    `prefix_cache=True` imitates llama.cpp's KV reuse: each reply reports the prompt
    tokens evaluated (`prompt_tokens_evaluated`), those after the longest prefix shared
    with the previous prompt and its reply (at least one).
    """

    def __init__(
        self,
        replies: list[str],
        delay_s: float = 0.0,
        *,
        n_ctx: int = 4096,
        piece_chars: int = 4,
        name: str = "scripted",
        prefix_cache: bool = False,
    ) -> None:
        self.replies = list(replies)
        self.delay_s = delay_s
        self.n_ctx = n_ctx
        self.piece_chars = piece_chars
        self.identity = ModelIdentity(name=name, backend="scripted")
        self.calls: list[ScriptedCall] = []
        self._lock = threading.Lock()
        self.prefix_cache = prefix_cache
        self._cached: list[str] = []  # the "tokens" the imitated cache holds

    @staticmethod
    def _count(text: str) -> int:
        return len(text.split())

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return sum(self._count(m.content) + TOKENS_PER_MESSAGE for m in messages)

    def count_text_tokens(self, text: str) -> int:
        return self._count(text)

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        response_format: dict[str, Any] | None = None,
    ) -> Iterator[StreamChunk]:
        with self._lock:
            if len(self.calls) >= len(self.replies):
                raise BackendError(
                    f"scripted backend has no reply left for request {len(self.calls) + 1} "
                    f"(it was given {len(self.replies)})"
                )
            reply = self.replies[len(self.calls)]
            self.calls.append(ScriptedCall(list(messages), params, response_format))
            evaluated = self._evaluate(messages, reply) if self.prefix_cache else None
        return self._stream(reply, self.count_tokens(messages), params.max_tokens, evaluated)

    @staticmethod
    def _tokens(message: ChatMessage) -> list[str]:
        return ["<m>", message.role, ":", *message.content.split(), "</m>"]  # 4 + words

    def _evaluate(self, messages: list[ChatMessage], reply: str) -> int:
        prompt = [t for m in messages for t in self._tokens(m)]
        prefix = 0
        for cached, token in zip(self._cached, prompt, strict=False):
            if cached != token:
                break
            prefix += 1
        self._cached = [*prompt, "<m>", "assistant", ":", *reply.split()]
        return max(len(prompt) - prefix, 1)

    def _stream(
        self, reply: str, prompt_tokens: int, max_tokens: int, evaluated: int | None = None
    ) -> Iterator[StreamChunk]:
        words = reply.split()
        finish = "length" if len(words) > max_tokens else "stop"
        if finish == "length":  # cut at max_tokens words, keeping the original spacing
            cut = 0
            for _ in range(max_tokens):
                cut = reply.index(words[_], cut) + len(words[_])
            reply = reply[:cut]
        for start in range(0, len(reply), self.piece_chars):
            if self.delay_s:
                time.sleep(self.delay_s)
            # with the first piece, as llama.cpp's: a reply stopped early has it too
            yield StreamChunk(
                text=reply[start : start + self.piece_chars], prompt_tokens_evaluated=evaluated
            )
            evaluated = None
        yield StreamChunk(
            text="",
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=min(len(words), max_tokens),
            prompt_tokens_evaluated=evaluated,
        )
