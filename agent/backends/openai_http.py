"""An OpenAI-compatible HTTP endpoint (llama.cpp server, vLLM, Ollama) with SSE streaming.

`base_url` is the API root, e.g. ``http://host:8080/v1``; a bare
``http://host:8080`` gets ``/v1`` appended. The served model is chosen from
`GET /models`: the configured name when the server has it, else the first
one. Token counts for context budgeting are estimated (about 3.5 characters a
token plus a few per message) because the protocol has no tokenizer call; the
counts in each reply's `usage` are the server's own when it sends them.

Several servers (one eval over several machines): `base_url` may list API roots separated
by commas, all serving the same model (the same name from `GET /models`). Each thread that
streams from the backend is bound to one server, in turn, and stays with it: an episode
runs on one thread, so its turns reach the server (and slot) that cached its prefix.

Prompt reuse: every request asks for `cache_prompt: true` (llama.cpp's server keeps a
slot's evaluated prefix and evaluates only what follows it; vLLM caches prefixes on its
own). The prompt tokens a reply actually evaluated are read from llama.cpp's
`timings.prompt_n`, or from `usage.prompt_tokens_details.cached_tokens` (vLLM, OpenAI);
a server that sends neither leaves them unknown. A server that refuses the unknown
`cache_prompt` field is asked again without it.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from agent.backends.base import BackendError, StreamChunk
from agent.events import ChatMessage, ModelIdentity, SamplingParams

CHARS_PER_TOKEN = 3.5
TOKENS_PER_MESSAGE = 4


def api_root(base_url: str) -> str:
    url = base_url.rstrip("/")
    if urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url


def evaluated_tokens(
    usage: dict[str, Any], timings: dict[str, Any], prompt_tokens: int
) -> int | None:
    """The prompt tokens the server evaluated: llama.cpp's `timings.prompt_n`, else the
    prompt less `usage.prompt_tokens_details.cached_tokens`; None when it says neither."""
    if isinstance(timings.get("prompt_n"), int | float):
        return int(timings["prompt_n"])
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int | float):
        return max(0, prompt_tokens - int(details["cached_tokens"]))
    return None


class OpenAIBackend:
    """Chat completions from a server speaking the OpenAI API."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        n_ctx: int = 4096,
        timeout_s: float = 600.0,
        cache_prompt: bool = True,
    ) -> None:
        self.roots = [api_root(u) for u in base_url.split(",") if u.strip()]
        if not self.roots:
            raise BackendError("--base-url is empty; give the server's API root")
        self.root = self.roots[0]
        self.cache_prompt = cache_prompt
        self._send_cache_prompt = True  # False once a server has refused the field
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.clients = [
            httpx.Client(
                base_url=root, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0)
            )
            for root in self.roots
        ]
        self.client = self.clients[0]
        self.n_ctx = n_ctx
        self._local = threading.local()
        self._next = itertools.count()
        self._next_lock = threading.Lock()
        chosen = [self._choose_model(client, root, model) for client, root in self._servers()]
        if len(set(chosen)) > 1:
            raise BackendError(
                "the servers in --base-url serve different models "
                f"({', '.join(f'{r}: {m}' for r, m in zip(self.roots, chosen, strict=True))}); "
                "serve one model under one name on all of them (llama-server --alias NAME) or "
                "pass --model NAME"
            )
        self.model = chosen[0]
        self.identity = ModelIdentity(
            name=self.model, backend="openai", location=",".join(self.roots)
        )

    def _servers(self) -> list[tuple[httpx.Client, str]]:
        return list(zip(self.clients, self.roots, strict=True))

    def _server(self) -> tuple[httpx.Client, str]:
        """This thread's server: assigned in turn on first use, then kept."""
        index = getattr(self._local, "server", None)
        if index is None:
            with self._next_lock:
                index = next(self._next) % len(self.clients)
            self._local.server = index
        return self.clients[index], self.roots[index]

    def _choose_model(self, client: httpx.Client, root: str, wanted: str | None) -> str:
        try:
            response = client.get("/models")
            response.raise_for_status()
            served = [m["id"] for m in response.json().get("data", []) if "id" in m]
        except httpx.HTTPStatusError as exc:
            raise BackendError(
                f"{root}/models answered HTTP {exc.response.status_code}; check --base-url "
                "(it should be the API root, e.g. http://host:8080/v1) and the API key"
            ) from exc
        except httpx.HTTPError as exc:
            raise BackendError(
                f"cannot reach the model server at {root} ({exc}); start the server or fix "
                "--base-url"
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(
                f"{root}/models did not answer with an OpenAI model list; is this an "
                "OpenAI-compatible server?"
            ) from exc
        if wanted and wanted in served:
            return wanted
        if served:
            return served[0]
        if wanted:
            return wanted
        raise BackendError(f"the server at {root} serves no models")

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        chars = sum(len(m.content) for m in messages)
        return int(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)

    def count_text_tokens(self, text: str) -> int:
        """An estimate: the server's tokenizer is not available here."""
        return max(int(len(text) / CHARS_PER_TOKEN), 1 if text else 0)

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        response_format: dict[str, Any] | None = None,
    ) -> Iterator[StreamChunk]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.model_dump() for m in messages],
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = params.stop
        if response_format is not None:
            body["response_format"] = response_format
        if self._send_cache_prompt:
            body["cache_prompt"] = self.cache_prompt  # llama.cpp's server; others ignore it
        return self._stream(body, self.count_tokens(messages))

    def _stream(self, body: dict[str, Any], estimated_prompt: int) -> Iterator[StreamChunk]:
        finish: str | None = None
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        pieces = 0
        client, root = self._server()
        try:
            with client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    detail = response.read().decode("utf-8", "replace")[:300]
                    if not self._refuses_cache_prompt(response.status_code, detail, body):
                        raise BackendError(
                            f"{root}/chat/completions answered HTTP "
                            f"{response.status_code}: {detail}"
                        )
                else:
                    for line in response.iter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        try:
                            chunk = json.loads(data)
                        except json.JSONDecodeError as exc:
                            raise BackendError(
                                f"the server sent a malformed event: {data[:200]}"
                            ) from exc
                        if chunk.get("usage"):
                            usage = chunk["usage"]
                        if isinstance(chunk.get("timings"), dict):
                            timings = chunk["timings"]
                        for choice in chunk.get("choices") or []:
                            text = (choice.get("delta") or {}).get("content") or ""
                            if text:
                                pieces += 1
                                yield StreamChunk(text=text)
                            if choice.get("finish_reason"):
                                finish = choice["finish_reason"]
        except httpx.HTTPError as exc:
            raise BackendError(f"the model server at {root} failed mid-reply: {exc}") from exc
        if response.status_code != 200:  # refused cache_prompt: the same request without it
            yield from self._stream(body, estimated_prompt)
            return
        prompt_tokens = int(usage.get("prompt_tokens", estimated_prompt))
        yield StreamChunk(
            text="",
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=int(usage.get("completion_tokens", pieces)),
            prompt_tokens_evaluated=evaluated_tokens(usage, timings, prompt_tokens),
        )

    def _refuses_cache_prompt(self, status: int, detail: str, body: dict[str, Any]) -> bool:
        """A strict server that rejects the unknown `cache_prompt` field: drop it (from this
        request and every later one) and say so."""
        if status in (400, 422) and "cache_prompt" in detail and "cache_prompt" in body:
            del body["cache_prompt"]
            self._send_cache_prompt = False
            return True
        return False

    def close(self) -> None:
        for client in self.clients:
            client.close()
