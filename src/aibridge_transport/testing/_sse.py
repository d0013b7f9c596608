"""Server-sent events: their framing, and how a stream's events are cut into body chunks."""

from __future__ import annotations

import json
from typing import Any

from ..types import Send
from ._script import Chunking

__all__ = ["ChunkWriter", "sse"]


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event: `event: <name>` (when given) and `data: <json>`."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event is not None else ""
    return f"{head}data: {payload}\n\n".encode()


class ChunkWriter:
    """Sends events as ASGI body messages, grouped and cut the way a `Chunking` says."""

    def __init__(self, send: Send, chunking: Chunking | None) -> None:
        self._send = send
        self._events = chunking.events if chunking is not None else 1
        self._size = chunking.size if chunking is not None else None
        self._pending: list[bytes] = []

    async def write(self, *events: bytes) -> None:
        for event in events:
            self._pending.append(event)
            if len(self._pending) >= self._events:
                await self.flush()

    async def flush(self) -> None:
        """Send what is pending (before the bridge waits, and at the end)."""
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        size = self._size or len(data)
        for start in range(0, len(data), size):
            piece = data[start : start + size]
            await self._send({"type": "http.response.body", "body": piece, "more_body": True})
