"""The one small interface every model backend implements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agent.errors import FixloopError
from agent.events import ChatMessage, ModelIdentity, SamplingParams


class BackendError(FixloopError, RuntimeError):
    """A backend that cannot start or answer; the message names the problem and the fix."""


@dataclass
class StreamChunk:
    """A piece of a streamed reply. The last chunk carries the token counts;
    `prompt_tokens_evaluated` may come earlier, with the first text (llama.cpp knows it
    before the first token, and a reply stopped early never reaches the last chunk)."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Of prompt_tokens, those the model actually evaluated: the rest came from its cache of
    # the previous prompt's prefix (KV reuse). None when the backend cannot tell.
    prompt_tokens_evaluated: int | None = None


@runtime_checkable
class Backend(Protocol):
    identity: ModelIdentity
    n_ctx: int

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        """Tokens the messages take once the chat template is applied."""
        ...

    def count_text_tokens(self, text: str) -> int:
        """Tokens in a piece of reply text (a reply stopped before the backend counted it)."""
        ...

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        response_format: dict[str, Any] | None = None,
    ) -> Iterator[StreamChunk]:
        """Stream the assistant's reply; closing the iterator stops generation."""
        ...
