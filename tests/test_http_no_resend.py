"""`HTTPTransportFactory` never re-sends a request (behaviour §11).

Inference is not idempotent: a request the bridge has received may have been billed, so only
the caller may decide to send it again (coder's gateway client says the same and turns off
Go's replay of idempotent requests). A raw socket server on 127.0.0.1 drops the connection
mid-request and counts the request heads it read: exactly one arrives, and the caller gets
its own client library's error. A re-send would have to reach this server, which reads and
counts it before it drops it, before the caller could see any error: once the caller has its
error, the count is final.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import httpx2
import pytest

from aibridge_transport import HTTPTransportFactory, Source, with_delegated_api_key_id

pytestmark = pytest.mark.anyio

KEY = "gateway-key-for-no-resend"
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"
FLAVOURS = pytest.mark.parametrize("flavour", ["httpx", "httpx2"])


class DroppingServer:
    """Answers the first `answered` requests, then drops the connection after each head."""

    def __init__(self, answered: int = 0) -> None:
        self.answered = answered
        self.heads: list[bytes] = []
        self.connections = 0
        self.url = ""

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        self.connections += 1
        buffered = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buffered:
                    try:
                        buffered += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                self.heads.append(head.split(b"\r\n", 1)[0])
                if len(self.heads) > self.answered:
                    return  # mid-request: the body (if any) unread, no response
                await stream.send(ANSWER)

    async def serve(self, listener: anyio.abc.SocketListener) -> None:
        async with listener, anyio.create_task_group() as connections:
            while True:
                stream = await listener.accept()
                connections.start_soon(self._connection, stream)


@asynccontextmanager
async def dropping_server(answered: int = 0) -> AsyncIterator[DroppingServer]:
    server = DroppingServer(answered)
    listener = (await anyio.create_tcp_listener(local_host="127.0.0.1")).listeners[0]
    assert isinstance(listener, anyio.abc.SocketListener)
    server.url = f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}"
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve, listener)
        yield server
        group.cancel_scope.cancel()


def module_of(flavour: str) -> Any:
    return httpx if flavour == "httpx" else httpx2


def dropped_errors(module: Any) -> tuple[type[Exception], ...]:
    # Which one depends on when the close reaches the client: before its last write
    # (`WriteError`), as a reset (`ReadError`), or as an orderly end (`RemoteProtocolError`).
    return (module.RemoteProtocolError, module.ReadError, module.WriteError)


REQUEST_BODY = b'{"model": "m", "messages": [{"role": "user", "content": "' + b"x" * 4096 + b'"}]}'


@FLAVOURS
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_request_dropped_mid_way_is_sent_once(flavour: str, method: str) -> None:
    module = module_of(flavour)
    async with dropping_server() as server:
        async with HTTPTransportFactory(server.url, KEY) as factory:
            transport = factory.transport_for("openai", Source.AGENTS, flavor=flavour)  # type: ignore[call-overload]
            async with module.AsyncClient(transport=transport, base_url="http://x") as client:
                with with_delegated_api_key_id("key-1"):
                    with pytest.raises(dropped_errors(module)):
                        content = REQUEST_BODY if method == "POST" else None
                        await client.request(method, "/v1/chat/completions", content=content)
        heads, connections = list(server.heads), server.connections
    assert heads == [f"{method} /api/v2/aibridge/openai/v1/chat/completions HTTP/1.1".encode()]
    assert connections == 1


@FLAVOURS
async def test_an_idempotent_request_on_a_reused_connection_is_not_replayed(
    flavour: str,
) -> None:
    # The case where Go's net/http replays a GET on a fresh connection: the pooled connection
    # dies under the second request. Here the caller gets the error.
    module = module_of(flavour)
    async with dropping_server(answered=1) as server:
        async with HTTPTransportFactory(server.url, KEY) as factory:
            transport = factory.transport_for("openai", Source.AGENTS, flavor=flavour)  # type: ignore[call-overload]
            async with module.AsyncClient(transport=transport, base_url="http://x") as client:
                with with_delegated_api_key_id("key-1"):
                    first = await client.get("/v1/models")
                    with pytest.raises(dropped_errors(module)):
                        await client.get("/v1/models")
        heads, connections = list(server.heads), server.connections
    assert first.text == "ok"
    assert heads == [b"GET /api/v2/aibridge/openai/v1/models HTTP/1.1"] * 2
    assert connections == 1


@FLAVOURS
@pytest.mark.parametrize("answered", [0, 1], ids=["fresh", "reused"])
async def test_a_sync_request_dropped_mid_way_is_sent_once(flavour: str, answered: int) -> None:
    module = module_of(flavour)
    outcome: list[Any] = []

    def call(url: str) -> None:
        with HTTPTransportFactory(url, KEY) as factory:
            transport = factory.transport_for("openai", Source.AGENTS, flavor=flavour)  # type: ignore[call-overload]
            with module.Client(transport=transport, base_url="http://x") as client:
                with with_delegated_api_key_id("key-1"):
                    for _ in range(answered):
                        outcome.append(client.get("/v1/models").text)
                    try:
                        client.post("/v1/chat/completions", content=REQUEST_BODY)
                    except Exception as exc:
                        outcome.append(exc)

    async with dropping_server(answered) as server:
        run: Callable[[str], None] = call
        await anyio.to_thread.run_sync(run, server.url)
        heads, connections = list(server.heads), server.connections
    *answers, error = outcome
    assert answers == ["ok"] * answered
    assert isinstance(error, dropped_errors(module)), error
    assert heads[answered:] == [b"POST /api/v2/aibridge/openai/v1/chat/completions HTTP/1.1"]
    assert len(heads) == answered + 1
    assert connections == 1


def test_the_pools_are_built_not_to_retry() -> None:
    # httpx retries only failed connects, and only with `retries=`; the pools say 0 aloud.
    factory = HTTPTransportFactory("http://127.0.0.1:9", KEY)
    for flavour in ("httpx", "httpx2"):
        transport: Any = factory.transport_for("openai", Source.AGENTS, flavor=flavour)
        assert transport._target.pool._pool._retries == 0
