"""Bounded output capture: keeps the head and the tail of a stream, counts what was cut in between."""
from __future__ import annotations


class CappedBuffer:
    """Holds at most ~2 x `limit` bytes however much is fed. `render()` returns the whole stream when it fit in
    `limit`, else head + a marker naming the number of bytes cut + tail."""

    def __init__(self, limit: int, slack: int = 512) -> None:
        self.limit = limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self._keep = limit + slack  # the tail holds everything while the stream is small

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.limit // 2 - len(self.head)
        if room > 0:
            self.head += data[:room]
        self.tail += data
        if len(self.tail) > self._keep:
            del self.tail[: len(self.tail) - self._keep]

    def endswith_window(self, size: int) -> bytes:
        return bytes(self.tail[-size:])

    def drop_tail(self, count: int) -> None:
        """Remove the last `count` bytes (the end marker) from the stream."""
        del self.tail[len(self.tail) - count:]
        self.total -= count
        if self.total < len(self.head):
            del self.head[self.total:]

    def render(self) -> tuple[str, int]:
        """(text, bytes cut)."""
        if self.total <= self.limit:
            return bytes(self.tail[-self.total:] if self.total else b"").decode("utf-8", "replace"), 0
        keep_tail = self.limit - len(self.head)
        cut = self.total - len(self.head) - keep_tail
        head = bytes(self.head).decode("utf-8", "replace")
        tail = bytes(self.tail[-keep_tail:]).decode("utf-8", "replace")
        return f"{head}\n[... {cut} bytes of output cut ...]\n{tail}", cut
