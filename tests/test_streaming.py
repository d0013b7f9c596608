"""Behaviour §5: streaming, chunk by chunk, with backpressure."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import cast

import anyio
import httpx
import pytest
from anyio import wait_all_tasks_blocked
from asgi import chunk, start
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from aibridge_transport import StreamingASGITransport
from aibridge_transport.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio


class LockStep:
    """An app that sends chunk i+1 only after the test acknowledged chunk i."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.acks_send, self.acks = anyio.create_memory_object_stream[None](count)
        self.started = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        self.started.set()
        with self.acks:
            for index in range(self.count):
                await send(chunk(b"token-%d" % index))
                await self.acks.receive()
        await send(chunk(b"", more_body=False))


async def test_response_returned_at_start_before_any_body() -> None:
    release = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start([(b"x-a", b"1")]))
        await release.wait()
        await send(chunk(b"late", more_body=False))

    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        async with client.stream("GET", "http://app/") as response:
            assert response.status_code == 200
            assert response.headers["x-a"] == "1"
            release.set()
            assert await response.aread() == b"late"


async def test_chunks_arrive_one_by_one_in_lock_step() -> None:
    app = LockStep(5)
    received = []
    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        async with client.stream("GET", "http://app/") as response:
            with app.acks_send:
                async for data in response.aiter_raw():
                    received.append(data)
                    await app.acks_send.send(None)
    assert received == [b"token-%d" % index for index in range(5)]


async def test_empty_chunks_are_skipped() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        for body in (b"", b"a", b"", b"", b"b", b""):
            await send(chunk(body))
        await send(chunk(b"", more_body=False))

    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        async with client.stream("GET", "http://app/") as response:
            assert [data async for data in response.aiter_raw()] == [b"a", b"b"]


async def test_headers_are_a_snapshot_with_duplicates_and_order() -> None:
    headers = [(b"set-cookie", b"a=1"), (b"x-b", b"2"), (b"set-cookie", b"b=2")]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        sent = list(headers)
        await send(start(sent))
        sent.append((b"x-late", b"mutated after start"))
        await send(chunk(b"", more_body=False))

    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        response = await client.get("http://app/")
    assert response.headers.raw == headers


@pytest.mark.parametrize("buffer", [0, 1, 4])
async def test_backpressure_bounds_how_far_the_app_runs_ahead(buffer: int) -> None:
    sent = 0

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal sent
        await send(start())
        for _ in range(100):
            await send(chunk(b"x" * 1024))
            sent += 1
        await send(chunk(b"", more_body=False))

    transport = StreamingASGITransport(app=app, max_buffered_chunks=buffer)
    async with httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", "http://app/") as response:
            await wait_all_tasks_blocked()
            # `buffer` chunks wait in the stream; the app is blocked sending the next one.
            assert sent == buffer
            iterator = response.aiter_raw()
            await anext(iterator)
            await wait_all_tasks_blocked()
            assert sent == buffer + 1
            rest = [data async for data in iterator]
    assert len(rest) == 99
    assert sent == 100


async def test_body_ends_when_the_app_sends_the_final_body() -> None:
    finished_body = anyio.Event()
    app_may_end = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(chunk(b"all", more_body=False))
        finished_body.set()
        await app_may_end.wait()  # keeps running after the response completed

    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        response = await client.get("http://app/")
        assert response.content == b"all"
        assert finished_body.is_set()
        app_may_end.set()


async def test_head_has_no_body() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start([(b"content-length", b"4")]))
        await send(chunk(b"body", more_body=False))

    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        response = await client.head("http://app/")
    assert response.content == b""
    assert response.headers["content-length"] == "4"


async def test_iterating_again_resumes_where_it_stopped() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        for body in (b"1", b"2", b"3"):
            await send(chunk(body))
        await send(chunk(b"", more_body=False))

    client = httpx.AsyncClient(transport=StreamingASGITransport(app=app))
    request = client.build_request("GET", "http://app/")
    response = await client.send(request, stream=True)
    # aclosing: trio warns about an async generator left suspended by `break`.
    assert isinstance(response.stream, httpx.AsyncByteStream)
    first = cast(AsyncGenerator[bytes, None], aiter(response.stream))
    async with aclosing(first) as first_pass:
        async for data in first_pass:
            assert data == b"1"
            break
    assert [data async for data in response.stream] == [b"2", b"3"]
    await response.aclose()
    await client.aclose()


async def test_works_without_entering_client_or_transport() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(chunk(b"ok", more_body=False))

    client = httpx.AsyncClient(transport=StreamingASGITransport(app=app))
    response = await client.get("http://app/")
    assert response.text == "ok"
    await client.aclose()


async def test_request_body_is_streamed_into_the_app_as_it_asks() -> None:
    produced: list[int] = []
    received: list[tuple[bytes, list[int]]] = []

    async def body() -> AsyncIterator[bytes]:
        for index in range(3):
            produced.append(index)
            yield b"part-%d" % index

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            received.append((message["body"], list(produced)))
            if not message["more_body"]:
                break
        await send(start())
        await send(chunk(b"", more_body=False))

    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        await client.post("http://app/", content=body())
    # Each chunk reached the app before the next one was produced.
    assert received == [
        (b"part-0", [0]),
        (b"part-1", [0, 1]),
        (b"part-2", [0, 1, 2]),
        (b"", [0, 1, 2]),
    ]


async def test_full_duplex_request_waiting_for_response_does_not_deadlock() -> None:
    got_first_response_chunk = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"ping"
        await got_first_response_chunk.wait()
        yield b"after-pong"

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        while True:
            message = await receive()
            if message["body"]:
                await send(chunk(b"echo:" + message["body"]))
            if not message["more_body"]:
                break
        await send(chunk(b"", more_body=False))

    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        request = client.build_request("POST", "http://app/", content=body())
        response = await client.send(request, stream=True)
        received = []
        async for data in response.aiter_raw():
            received.append(data)
            got_first_response_chunk.set()
        await response.aclose()
    assert received == [b"echo:ping", b"echo:after-pong"]


async def _tokens(request: Request) -> StreamingResponse:
    async def generate() -> AsyncIterator[bytes]:
        for index in range(3):
            yield b"data: %d\n\n" % index

    return StreamingResponse(generate(), media_type="text/event-stream")


async def test_starlette_streaming_response() -> None:
    app = Starlette(routes=[Route("/stream", _tokens)])
    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        async with client.stream("GET", "http://app/stream") as response:
            lines = [line async for line in response.aiter_lines() if line]
    assert lines == ["data: 0", "data: 1", "data: 2"]


class EndlessEvents:
    def __init__(self) -> None:
        self.closed = anyio.Event()

    async def endpoint(self, request: Request) -> EventSourceResponse:
        async def events() -> AsyncIterator[dict[str, str]]:
            index = 0
            try:
                while True:
                    yield {"data": str(index)}
                    index += 1
                    await anyio.lowlevel.checkpoint()
            finally:
                self.closed.set()

        return EventSourceResponse(events())


async def test_endless_sse_closed_early_stops_the_generator() -> None:
    endless = EndlessEvents()
    app = Starlette(routes=[Route("/events", endless.endpoint)])
    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        async with client.stream("GET", "http://app/events") as response:
            data = []
            lines_iterator = cast(AsyncGenerator[str, None], response.aiter_lines())
            async with aclosing(lines_iterator) as lines:
                async for line in lines:
                    if line.startswith("data:"):
                        data.append(line)
                    if len(data) == 3:
                        break
    assert data == ["data: 0", "data: 1", "data: 2"]
    with anyio.fail_after(5):
        await endless.closed.wait()
