"""The ASGI chores the testing apps share: answering a lifespan, reading a request body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..types import Message, Receive, Send

__all__ = ["read_request_body", "serve_lifespan"]


async def serve_lifespan(
    receive: Receive, send: Send, on_shutdown: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Answer a lifespan scope: startup completes at once; shutdown runs `on_shutdown` first."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if on_shutdown is not None:
                await on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_request_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole request body, and the message that cut it short when the client left
    before sending it all (`http.disconnect`), else `None`."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts), message
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts), None
