"""The AI bridge as a service of its own, reached over HTTP with `HTTPTransportFactory`.

The bridge app (here the library's fake provider) runs behind `GatewayAuthMiddleware` under
uvicorn on 127.0.0.1; the caller is the same openai SDK code as in-process, given a transport
from `HTTPTransportFactory` instead of `InProcessTransportFactory`. The identity (source and
delegated API key id) crosses the wire in headers that only a caller with the gateway key can
set.

    AIBRIDGE_GATEWAY_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(32))') \\
        python examples/standalone_bridge.py       # add `trio` to run the caller on trio

To run only the bridge, scaled out over worker processes:

    AIBRIDGE_GATEWAY_KEY=... uvicorn --factory standalone_bridge:create_app \\
        --app-dir examples --host 127.0.0.1 --port 8787 --workers 4

Needs the `examples` extra: pip install -e '.[examples]' in a clone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import httpx2
import openai
import uvicorn

from aibridge_transport import (
    GatewayAuthMiddleware,
    GatewayKeyMismatchError,
    HTTPTransportFactory,
    Source,
    with_delegated_api_key_id,
)
from aibridge_transport.testing import FakeAIBridge, Reply
from aibridge_transport.types import ASGIApp

GATEWAY_KEY_VARIABLE = "AIBRIDGE_GATEWAY_KEY"
TEXT = "Each token crosses the socket to the caller as soon as the bridge sends it."
TOKEN_DELAY = 0.05


def create_app() -> ASGIApp:
    """The bridge service: the bridge app behind the gateway key from the environment."""
    bridge = FakeAIBridge(default=Reply(text=TEXT, delay=TOKEN_DELAY))
    return GatewayAuthMiddleware(bridge, gateway_key=os.environ[GATEWAY_KEY_VARIABLE])


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


@contextmanager
def serve_in_background(app: ASGIApp) -> Iterator[str]:
    """Run `app` under uvicorn on a free port of 127.0.0.1 in a thread; yield its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        if not server.ready.wait(timeout=10) or not server.started:
            raise RuntimeError("the bridge did not start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


async def call_bridge(bridge_url: str, gateway_key: str) -> None:
    """The caller's side: the openai SDK, given a transport to the standalone bridge."""
    async with HTTPTransportFactory(bridge_url, gateway_key) as factory:
        transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
        client = openai.AsyncOpenAI(
            base_url="http://aibridge/v1",  # only the path counts: the factory picks the host
            api_key="unused-behind-the-bridge",
            http_client=httpx2.AsyncClient(transport=transport),
            max_retries=0,
        )
        started = time.perf_counter()
        with with_delegated_api_key_id("example-key"):
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "How do tokens travel?"}],
                stream=True,
            )
            async with stream:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        elapsed = (time.perf_counter() - started) * 1000
                        print(f"  {elapsed:6.0f} ms  {chunk.choices[0].delta.content!r}")
        await client.close()


async def call_with_wrong_key(bridge_url: str) -> None:
    async with HTTPTransportFactory(bridge_url, "not-the-gateway-key") as factory:
        transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
        async with httpx2.AsyncClient(transport=transport) as client:
            with with_delegated_api_key_id("example-key"):
                try:
                    await client.get("http://aibridge/v1/models")
                except GatewayKeyMismatchError as exc:
                    print(f"wrong gateway key: {exc}")


def main() -> None:
    # The bridge logs each refused request (never the key itself); show it with the output.
    logging.basicConfig(stream=sys.stdout, format="bridge log: %(message)s")
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    # A demo key when none is configured; a real deployment shares one through its secrets.
    gateway_key = os.environ.setdefault(GATEWAY_KEY_VARIABLE, secrets.token_urlsafe(32))
    with serve_in_background(create_app()) as bridge_url:
        print(f"bridge on {bridge_url}; openai SDK -> HTTPTransportFactory -> uvicorn -> bridge:")
        anyio.run(call_bridge, bridge_url, gateway_key, backend=backend)
        anyio.run(call_with_wrong_key, bridge_url, backend=backend)


if __name__ == "__main__":
    main()
