"""A backend shared by the runner's worker threads, one generation at a time.

A model in this process decodes for one episode at a time, so `SerializedBackend` puts a
lock around it; a server's endpoint (`in_process` is False) is used by every worker at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agent.events import ChatMessage, ModelIdentity, SamplingParams

if TYPE_CHECKING:
    from agent.backends.base import Backend, StreamChunk


class SerializedBackend:
    """A backend shared by worker threads: one generation (or token count) at a time.

    A thread takes the lock when it first counts tokens for a turn (the loop does
    that before it starts timing the reply) and keeps it until its reply has
    streamed, so time spent waiting for another episode's generation is not
    counted as generation time. The wait is kept per thread (`take_wait`).
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.identity: ModelIdentity = inner.identity
        self.n_ctx: int = inner.n_ctx
        self._lock = threading.Lock()
        self._local = threading.local()

    def _acquire(self) -> None:
        if getattr(self._local, "owned", False):
            return
        started = time.perf_counter()
        self._lock.acquire()
        self._local.owned = True
        self._local.wait = getattr(self._local, "wait", 0.0) + time.perf_counter() - started

    def release(self) -> None:
        """Give the model up if this thread holds it (after an episode, whatever happened)."""
        if getattr(self._local, "owned", False):
            self._local.owned = False
            self._lock.release()

    def take_wait(self) -> float:
        """Seconds this thread waited for the model since the last call."""
        wait = getattr(self._local, "wait", 0.0)
        self._local.wait = 0.0
        return float(wait)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        self._acquire()
        return self.inner.count_tokens(messages)

    def count_text_tokens(self, text: str) -> int:
        return self.inner.count_text_tokens(text)

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        response_format: dict[str, Any] | None = None,
    ) -> Iterator[StreamChunk]:
        self._acquire()
        try:
            yield from self.inner.stream_chat(messages, params, response_format)
        finally:
            self.release()


def in_process(backend: Backend) -> bool:
    """A model in this process (one generation at a time), not a server's endpoint."""
    return backend.identity.backend != "openai"
