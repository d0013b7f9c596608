"""Behaviour §6: ending, cancelling, timing out."""

from __future__ import annotations

import asyncio
import gc

import anyio
import httpx
import pytest
import sniffio
from asgi import chunk, start

from aibridge_transport import StreamingASGITransport
from aibridge_transport.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.anyio


class Watched:
    """An app that streams until told otherwise and records how it ended."""

    def __init__(self, *, ignore_disconnect: bool = False, before_start: bool = False) -> None:
        self.ignore_disconnect = ignore_disconnect
        self.before_start = before_start
        self.running = 0
        self.started = anyio.Event()
        self.ended = anyio.Event()
        self.received: list[Message] = []
        self.sends_after_disconnect_returned = False
        self.cancelled = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.running += 1
        try:
            await receive()  # the (empty) request body
            if self.before_start:
                self.started.set()
                await anyio.sleep_forever()
            await send(start())
            await send(chunk(b"first"))
            self.started.set()
            if self.ignore_disconnect:
                await anyio.sleep_forever()
            message = await receive()  # blocks until the client leaves
            self.received.append(message)
            await send(chunk(b"after disconnect"))
            await send(chunk(b"", more_body=False))
            self.sends_after_disconnect_returned = True
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        finally:
            self.running -= 1
            self.ended.set()


async def test_early_close_disconnects_the_app() -> None:
    app = Watched()
    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        async with client.stream("GET", "http://app/") as response:
            assert await anext(response.aiter_raw()) == b"first"
        with anyio.fail_after(5):
            await app.ended.wait()
    assert app.received == [{"type": "http.disconnect"}]
    assert app.sends_after_disconnect_returned
    assert not app.cancelled


async def test_receive_blocks_until_disconnect_before_body_complete() -> None:
    app = Watched()
    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        async with client.stream("GET", "http://app/") as response:
            await app.started.wait()
            await anyio.wait_all_tasks_blocked()
            assert app.received == []  # still waiting in receive()
            await response.aclose()
        with anyio.fail_after(5):
            await app.ended.wait()
    assert app.received == [{"type": "http.disconnect"}]


async def test_close_returns_promptly_and_grace_cancels_a_stubborn_app() -> None:
    app = Watched(ignore_disconnect=True)
    transport = StreamingASGITransport(app=app, disconnect_grace=0.05)
    async with httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", "http://app/") as response:
            await app.started.wait()
            with anyio.fail_after(0.5):  # never waits for the app (which never ends itself)
                await response.aclose()
        assert app.running == 1
        with anyio.fail_after(5):
            await app.ended.wait()
    assert app.cancelled


async def test_response_read_and_closed_in_another_task() -> None:
    app = Watched()
    transport = StreamingASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport)
    response = await client.send(client.build_request("GET", "http://app/"), stream=True)
    received: list[bytes] = []

    async def reader() -> None:
        received.append(await anext(response.aiter_raw()))
        await response.aclose()

    async with anyio.create_task_group() as group:
        group.start_soon(reader)
    with anyio.fail_after(5):
        await app.ended.wait()
    assert received == [b"first"]
    assert app.received == [{"type": "http.disconnect"}]
    await client.aclose()


async def test_garbage_collected_response_is_released() -> None:
    app = Watched()
    client = httpx.AsyncClient(transport=StreamingASGITransport(app=app))

    async def abandon() -> None:
        response = await client.send(client.build_request("GET", "http://app/"), stream=True)
        await app.started.wait()
        del response

    await abandon()
    gc.collect()
    with anyio.fail_after(5):
        await app.ended.wait()
    assert app.received == [{"type": "http.disconnect"}]
    await client.aclose()


async def test_cancelled_caller_mid_body_disconnects_then_cancels_the_app() -> None:
    app = Watched(ignore_disconnect=True)
    transport = StreamingASGITransport(app=app, disconnect_grace=0.05)
    client = httpx.AsyncClient(transport=transport)
    with anyio.CancelScope() as scope:
        async with client.stream("GET", "http://app/") as response:
            async for _ in response.aiter_raw():
                await app.started.wait()
                scope.cancel()
                await anyio.sleep_forever()
    assert scope.cancelled_caught  # it came out as a cancellation
    with anyio.fail_after(5):
        await app.ended.wait()
    assert app.cancelled
    await client.aclose()


async def test_cancelled_while_waiting_for_headers() -> None:
    app = Watched(before_start=True)
    transport = StreamingASGITransport(app=app, disconnect_grace=0.05)
    async with httpx.AsyncClient(transport=transport) as client:
        async with anyio.create_task_group() as group:

            async def request() -> None:
                await client.get("http://app/")

            group.start_soon(request)
            await app.started.wait()
            group.cancel_scope.cancel()
        with anyio.fail_after(5):
            await app.ended.wait()
    assert app.cancelled


async def test_read_timeout_waiting_for_start() -> None:
    app = Watched(before_start=True)
    transport = StreamingASGITransport(app=app, disconnect_grace=0.05)
    async with httpx.AsyncClient(transport=transport, timeout=0.05) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("http://app/")
        with anyio.fail_after(5):
            await app.ended.wait()


async def test_read_timeout_between_chunks_disconnects_the_app() -> None:
    app = Watched(ignore_disconnect=False)
    transport = StreamingASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, timeout=0.05) as client:
        async with client.stream("GET", "http://app/") as response:
            iterator = response.aiter_raw()
            assert await anext(iterator) == b"first"
            with pytest.raises(httpx.ReadTimeout):
                await anext(iterator)
        with anyio.fail_after(5):
            await app.ended.wait()
    assert app.received == [{"type": "http.disconnect"}]


async def test_no_timeout_means_waiting() -> None:
    release = anyio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send(start())
        await send(chunk(b"done", more_body=False))

    async with httpx.AsyncClient(
        transport=StreamingASGITransport(app=slow), timeout=None
    ) as client:
        async with anyio.create_task_group() as group:
            result: list[bytes] = []

            async def request() -> None:
                result.append((await client.get("http://app/")).content)

            group.start_soon(request)
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert result == [b"done"]


async def test_closing_the_transport_cancels_and_awaits_every_app_task() -> None:
    apps = [Watched(ignore_disconnect=True) for _ in range(5)]

    async def router(scope: Scope, receive: Receive, send: Send) -> None:
        await apps[int(scope["path"].strip("/"))](scope, receive, send)

    client = httpx.AsyncClient(transport=StreamingASGITransport(app=router, disconnect_grace=60))
    tasks_before = asyncio.all_tasks() if sniffio.current_async_library() == "asyncio" else None
    responses = []
    for index in range(len(apps)):
        responses.append(
            await client.send(client.build_request("GET", f"http://a/{index}"), stream=True)
        )
    await client.aclose()
    assert [app.running for app in apps] == [0] * 5
    assert all(app.cancelled for app in apps)
    if tasks_before is not None:
        assert asyncio.all_tasks() == tasks_before
    for response in responses:
        await response.aclose()
