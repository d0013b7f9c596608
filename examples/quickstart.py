"""Quick start: a streaming ASGI app, called in-process through the aibridge factory."""

from __future__ import annotations

import anyio
import httpx

from aibridge_transport import (
    InProcessTransportFactory,
    Source,
    delegated_api_key_id_from_context,
    source_from_context,
    with_delegated_api_key_id,
)
from aibridge_transport.types import Receive, Scope, Send


async def bridge_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A tiny bridge: streams three server-sent events, naming who asked."""
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    who = f"{source_from_context()}/{delegated_api_key_id_from_context()}"
    for token in ("Hello", "from", scope["path"], who):
        event = f"data: {token}\n\n".encode()
        await send({"type": "http.response.body", "body": event, "more_body": True})
        await anyio.sleep(0.1)  # a model thinking between tokens
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def main() -> None:
    factory = InProcessTransportFactory(bridge_app)
    with with_delegated_api_key_id("key-123"):
        transport = factory.transport_for("openai", Source.AGENTS)
        async with httpx.AsyncClient(transport=transport, base_url="http://aibridge") as client:
            async with client.stream("POST", "/v1/chat/completions", json={}) as response:
                async for line in response.aiter_lines():  # each line as the app sends it
                    if line:
                        print(line)


if __name__ == "__main__":
    anyio.run(main)
