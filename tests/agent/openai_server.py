"""A tiny OpenAI-compatible server on 127.0.0.1 for tests: canned replies, real HTTP and SSE."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class CannedOpenAI:
    """State shared with the handler: replies to give, requests seen."""

    def __init__(
        self,
        replies: list[str],
        model: str = "tiny-coder",
        api_key: str | None = None,
        *,
        timings: dict[str, Any] | None = None,
        reject_fields: tuple[str, ...] = (),
        delay_s: float = 0.0,
    ):
        self.replies = list(replies)
        self.model = model
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self.timings = timings  # sent with the last chunk, as llama.cpp's server does
        self.reject_fields = reject_fields  # HTTP 400 for a request with any of these
        self.delay_s = delay_s  # before each streamed piece
        self.in_flight = 0  # replies being streamed now
        self.max_in_flight = 0  # the most at once
        self.lock = threading.Lock()


def _handler(state: CannedOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _authorized(self) -> bool:
            if state.api_key and self.headers.get("Authorization") != f"Bearer {state.api_key}":
                self._json(401, {"error": {"message": "bad key"}})
                return False
            return True

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if not self._authorized():
                return
            if self.path == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": state.model}]})
            else:
                self._json(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            if not self._authorized():
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":
                self._json(404, {"error": {"message": "not found"}})
                return
            rejected = [f for f in state.reject_fields if f in body]
            if rejected:
                self._json(400, {"error": {"message": f"unrecognized field {rejected[0]}"}})
                return
            with state.lock:
                state.requests.append(body)
                reply = state.replies.pop(0) if state.replies else None
            if reply is None:
                self._json(500, {"error": {"message": "no canned reply left"}})
                return
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                self._reply(reply)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _reply(self, reply: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            pieces = [reply[i : i + 5] for i in range(0, len(reply), 5)]
            for piece in pieces:
                if state.delay_s:
                    time.sleep(state.delay_s)
                self._event({"choices": [{"index": 0, "delta": {"content": piece}}]})
            last: dict[str, Any] = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            if state.timings is not None:
                last["timings"] = state.timings
            self._event(last)
            self._event(
                {"choices": [], "usage": {"prompt_tokens": 42, "completion_tokens": len(pieces)}}
            )
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

        def _event(self, chunk: dict[str, Any]) -> None:
            chunk = {"id": "x", "object": "chat.completion.chunk", "model": state.model, **chunk}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()

    return Handler


@contextmanager
def serve(state: CannedOpenAI) -> Iterator[CannedOpenAI]:
    """Run the server on a free loopback port for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
