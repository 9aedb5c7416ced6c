"""Capturing a stream with a size cap: the head and the tail are kept, the middle counted."""

from __future__ import annotations

from agent.sandbox.result import CapturedText


class CappedBuffer:
    """Keeps the first and last `limit // 2` bytes of everything fed to it."""

    def __init__(self, limit: int) -> None:
        self.head_limit = limit - limit // 2
        self.tail_limit = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk or self.tail_limit == 0:
            return
        if len(chunk) >= self.tail_limit:
            self.tail = bytearray(chunk[-self.tail_limit :])
        else:
            self.tail += chunk
            if len(self.tail) > 2 * self.tail_limit:  # amortised trimming
                del self.tail[: len(self.tail) - self.tail_limit]

    def result(self) -> CapturedText:
        tail = bytes(self.tail[-self.tail_limit :]) if self.tail_limit else b""
        kept = len(self.head) + len(tail)
        cut = self.total - kept
        text = decode(bytes(self.head))
        if cut:
            text += f"\n[... {cut} bytes cut ...]\n"
        text += decode(tail)
        return CapturedText(text=text, total_bytes=self.total, truncated_bytes=cut)


def decode(data: bytes) -> str:
    """UTF-8 where it is UTF-8; other bytes as backslash escapes (never lost, never raises)."""
    return data.decode("utf-8", errors="backslashreplace")
