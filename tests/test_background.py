"""Behaviour §6: an app that runs on after its response is complete (background tasks).

Its client's business is over, not the app's: closing the response or the client never
cancels it, and whoever owns the app's loop waits for it at its own close, as a server does at
shutdown: the factory at `aclose()` / `close()`, a bare transport at its own close.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from asgi import chunk, start

from aibridge_transport import (
    InProcessTransportFactory,
    Source,
    StreamingASGITransport,
    with_delegated_api_key_id,
)
from aibridge_transport.testing import live_exchanges
from aibridge_transport.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.anyio

WAIT = 10.0  # a bound on waits that must not happen: a regression fails instead of hanging


class Background:
    """Streams a response, then works on after it until `release` is set (a usage record)."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.completed = anyio.Event()  # the final body was sent
        self.received: list[Message] = []
        self.ended: str | None = None
        self.ended_event = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await receive()  # the (empty) request body
            await send(start())
            await send(chunk(b"one"))
            await send(chunk(b"two", more_body=False))
            self.completed.set()
            await self.release.wait()
            self.received.append(await receive())
            self.ended = "returned"
        except anyio.get_cancelled_exc_class():
            self.ended = "cancelled"
            raise
        finally:
            self.ended_event.set()


def factory_client(factory: InProcessTransportFactory) -> httpx.AsyncClient:
    transport = factory.transport_for("openai", Source.AGENTS)
    return httpx.AsyncClient(transport=transport, base_url="http://aibridge")


async def read_streamed(client: httpx.AsyncClient) -> list[bytes]:
    with with_delegated_api_key_id("key-1"):
        async with client.stream("GET", "/v1/usage") as response:
            return [piece async for piece in response.aiter_raw()]


async def test_closing_a_factory_client_neither_waits_nor_cancels_and_the_factory_close_waits() -> (
    None
):
    app = Background()
    # A grace far below the app's work: closing must arm no timer for a complete response.
    factory = InProcessTransportFactory(app, disconnect_grace=0)
    client = factory_client(factory)
    assert await read_streamed(client) == [b"one", b"two"]
    await client.aclose()  # returns at once: the app still works
    await anyio.wait_all_tasks_blocked()
    assert app.ended is None
    closed = False

    async def close_factory() -> None:
        nonlocal closed
        await factory.aclose()
        closed = True

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as group:
            group.start_soon(close_factory)
            await anyio.wait_all_tasks_blocked()
            assert not closed, "the factory's close did not wait for the background work"
            assert app.ended is None
            app.release.set()
    assert closed
    assert app.ended == "returned"
    # Its client is gone: receive() answers http.disconnect, the signal (behaviour §6).
    assert app.received == [{"type": "http.disconnect"}]


async def test_a_factory_client_dropped_unclosed_still_has_its_background_work_awaited() -> None:
    app = Background()
    factory = InProcessTransportFactory(app, disconnect_grace=0)
    client = factory_client(factory)
    assert await read_streamed(client) == [b"one", b"two"]
    del client  # SDKs drop their clients: the factory still owns the app

    async def release_when_blocked() -> None:
        await anyio.wait_all_tasks_blocked()
        assert app.ended is None
        app.release.set()

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as group:
            group.start_soon(release_when_blocked)
            await factory.aclose()
            assert app.ended == "returned"


async def test_the_factory_close_cancels_background_work_after_its_shutdown_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Background()  # never released
    factory = InProcessTransportFactory(app, shutdown_timeout=0.05)
    client = factory_client(factory)
    assert await read_streamed(client) == [b"one", b"two"]
    await client.aclose()
    with caplog.at_level(logging.WARNING, logger="aibridge_transport"), anyio.fail_after(WAIT):
        await factory.aclose()
    assert app.ended == "cancelled"
    [record] = [r for r in caplog.records if r.name == "aibridge_transport"]
    assert record.levelno == logging.WARNING
    assert "shutdown_timeout" in record.getMessage()
    assert "provider=openai" in record.getMessage()


async def test_the_shutdown_timeout_is_bounded_by_default() -> None:
    assert 0 < InProcessTransportFactory(None).shutdown_timeout < float("inf")


@pytest.mark.parametrize("raise_app_exceptions", [True, False], ids=["raise", "500"])
async def test_closing_a_complete_response_of_a_bare_transport_waits_for_the_app(
    raise_app_exceptions: bool,
) -> None:
    # As httpx.ASGITransport, which runs the app to its end: the effects of the work after
    # the response are there when the close returns, in both modes.
    effects: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(chunk(b"one"))
        await send(chunk(b"two", more_body=False))
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        effects.append("audit log written")

    transport = StreamingASGITransport(app, raise_app_exceptions=raise_app_exceptions)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        with anyio.fail_after(WAIT):
            assert await read_streamed(client) == [b"one", b"two"]
        assert effects == ["audit log written"]


async def test_closing_a_bare_transport_waits_for_work_past_the_grace_period() -> None:
    app = Background()
    transport = StreamingASGITransport(app, disconnect_grace=0)
    client = httpx.AsyncClient(transport=transport, base_url="http://app")
    assert await read_streamed(client) == [b"one", b"two"]  # the close waited 0 s
    await anyio.wait_all_tasks_blocked()
    assert app.ended is None  # never cancelled by its client
    closed = False

    async def close_client() -> None:
        nonlocal closed
        await client.aclose()
        closed = True

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as group:
            group.start_soon(close_client)
            await anyio.wait_all_tasks_blocked()
            assert not closed, "the transport's close did not wait for the background work"
            app.release.set()
    assert app.ended == "returned"
    assert live_exchanges(transport) == 0


async def test_closing_a_bare_transport_cancels_background_work_after_its_shutdown_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Background()  # never released
    transport = StreamingASGITransport(app, disconnect_grace=0, shutdown_timeout=0.05)
    client = httpx.AsyncClient(transport=transport, base_url="http://app")
    assert await read_streamed(client) == [b"one", b"two"]
    with caplog.at_level(logging.WARNING, logger="aibridge_transport"), anyio.fail_after(WAIT):
        await client.aclose()
    assert app.ended == "cancelled"
    assert "shutdown_timeout" in caplog.text
    assert live_exchanges(transport) == 0


async def test_what_still_streams_is_cancelled_after_the_grace_as_before() -> None:
    ended: list[str] = []

    async def stubborn(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(start())
            await send(chunk(b"one"))
            await anyio.sleep_forever()  # never completes its response
        except anyio.get_cancelled_exc_class():
            ended.append("cancelled")
            raise

    factory = InProcessTransportFactory(stubborn, disconnect_grace=0)
    client = factory_client(factory)
    with with_delegated_api_key_id("key-1"):
        async with client.stream("GET", "/v1/stream") as response:
            assert await anext(response.aiter_raw()) == b"one"
    with anyio.fail_after(WAIT):
        await client.aclose()
    assert ended == ["cancelled"]
    await factory.aclose()


def test_the_sync_factory_close_waits_for_background_work_its_client_close_left() -> None:
    release = threading.Event()
    ended: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan support
        try:
            await send(start())
            await send(chunk(b"done", more_body=False))
            await anyio.to_thread.run_sync(release.wait)
            ended.append("returned")
        except anyio.get_cancelled_exc_class():
            ended.append("cancelled")
            raise

    factory = InProcessTransportFactory(app, disconnect_grace=0)
    with factory:
        client = httpx.Client(
            transport=factory.transport_for("openai", Source.AGENTS), base_url="http://aibridge"
        )
        with with_delegated_api_key_id("key-1"):
            assert client.get("/v1/usage").content == b"done"
        client.close()
        closer = threading.Thread(target=factory.close)
        closer.start()
        closer.join(0.2)  # a bound: the close must still be waiting for the app
        assert closer.is_alive(), "the factory's close did not wait for the background work"
        assert ended == []
        release.set()
        closer.join(WAIT)
        assert not closer.is_alive()
    assert ended == ["returned"]


def test_closing_a_sync_bare_transport_waits_for_background_work() -> None:
    release = threading.Event()
    ended: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(chunk(b"done", more_body=False))
        await anyio.to_thread.run_sync(release.wait)
        ended.append("returned")

    transport: Any = StreamingASGITransport(app, disconnect_grace=0)
    client = httpx.Client(transport=transport, base_url="http://app")
    assert client.get("/").content == b"done"
    closer = threading.Thread(target=client.close)
    closer.start()
    closer.join(0.2)  # a bound: the close must still be waiting for the app
    assert closer.is_alive(), "the transport's close did not wait for the background work"
    release.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert ended == ["returned"]
