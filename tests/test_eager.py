"""How the app's task starts and hands over its first chunk (see `_backend` and `_exchange`).

On asyncio the app's first step runs eagerly, inside `handle_async_request`; on trio the app
task starts at the next scheduling point. Either way the app runs in a task of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from asgi import chunk, start

from aibridge_transport import StreamingASGITransport
from aibridge_transport.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio


async def test_an_app_that_answers_at_once_runs_in_its_own_task(anyio_backend: str) -> None:
    seen: dict[str, object] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["task"] = anyio.get_current_task().id
        await send(start())
        await send(chunk(b"done", more_body=False))
        seen["returned"] = True

    transport = StreamingASGITransport(app=app)
    request = httpx.Request("GET", "http://app/")
    response = await transport.handle_async_request(request)
    if anyio_backend == "asyncio":
        # Its first step ran before the transport returned: nothing was left to wait for.
        assert seen.get("returned") is True
    assert await response.aread() == b"done"
    await response.aclose()
    assert seen["returned"] is True
    assert seen["task"] != anyio.get_current_task().id
    await transport.aclose()


async def test_an_app_cancelling_its_callers_scope_at_once_cancels_that_scope_only() -> None:
    scopes: list[anyio.CancelScope] = []
    reached_after_the_request = False

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes[0].cancel()  # in the app's first step, which on asyncio runs eagerly
        await send(start())
        await send(chunk(b"done", more_body=False))

    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        with anyio.CancelScope() as caller_scope:
            scopes.append(caller_scope)
            await client.get("http://app/")
            reached_after_the_request = True
        assert caller_scope.cancelled_caught
        assert not reached_after_the_request
        # Nothing of that cancellation is left pending for the code after the scope.
        await anyio.lowlevel.checkpoint()
        response = await client.get("http://app/")
    assert response.text == "done"


async def test_a_waiting_reader_gets_the_first_chunk_before_the_app_fills_the_buffer(
    anyio_backend: str,
) -> None:
    produced = 0

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal produced
        await anyio.lowlevel.checkpoint()  # not at once: the reader is waiting for the start
        await send(start())
        for index in range(8):
            produced += 1
            await send(chunk(b"%d" % index))
        await send(chunk(b"", more_body=False))

    transport = StreamingASGITransport(app=app, max_buffered_chunks=8)
    async with httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", "http://app/") as response:
            iterator = response.aiter_raw()
            first = await anext(iterator)
            produced_when_read = produced
            rest = [data async for data in iterator]
    assert first == b"0"
    assert rest == [b"%d" % index for index in range(1, 8)]
    if anyio_backend == "asyncio":
        # The app passed its turn after the first chunk, and asyncio runs the woken reader
        # first: it had produced that one chunk only.
        assert produced_when_read == 1
    else:
        # Trio shuffles the order of tasks woken together (by design): the bound is the
        # buffer, as for any chunk.
        assert produced_when_read <= 8


async def test_only_a_body_read_before_it_was_sent_needs_a_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[int] = []
    create = anyio.create_memory_object_stream

    def counting(*args: Any, **kwargs: Any) -> Any:
        opened.append(1)
        return create(*args, **kwargs)

    monkeypatch.setattr(anyio, "create_memory_object_stream", counting)
    gate = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await anyio.lowlevel.checkpoint()  # not at once: the reader waits for the start
        await send(start())
        if scope["path"] == "/json":
            await send(chunk(b'{"ok": true}', more_body=False))
            return
        await send(chunk(b"first"))
        await gate.wait()  # the reader has to wait for the next chunk
        await send(chunk(b"second", more_body=False))

    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        # The start was awaited; the body was complete before it was read: no stream.
        response = await client.get("http://app/json")
        assert response.json() == {"ok": True}
        assert opened == []
        async with client.stream("GET", "http://app/stream") as streamed:
            chunks = streamed.aiter_raw()
            assert await anext(chunks) == b"first"
            assert opened == []
            reading = [b""]

            async def read_second() -> None:
                reading[0] = await anext(chunks)

            async with anyio.create_task_group() as group:
                group.start_soon(read_second)
                await anyio.wait_all_tasks_blocked()
                assert opened == [1]  # the reader waits on the stream it opened
                gate.set()
            assert reading[0] == b"second"


async def test_transport_closed_while_the_app_passes_its_turn_still_disconnects_it() -> None:
    saw: list[str] = []
    finished = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await anyio.lowlevel.checkpoint()  # the reader waits for the start
            await send(start())
            await send(chunk(b"first"))  # the reader is waiting: the app passes its turn here
            while True:
                message = await receive()
                saw.append(message["type"])
                if message["type"] == "http.disconnect":
                    return
        finally:
            finished.set()

    async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        async with client.stream("GET", "http://app/") as response:
            async for _ in response.aiter_raw():
                break
    # The client (and so the transport) closed at once; the app was cancelled only after it
    # had a turn to see why.
    await finished.wait()
    assert saw[-1] == "http.disconnect"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_loops_task_factory_still_makes_the_app_task(anyio_backend: str) -> None:
    # asyncio only: task factories are an asyncio loop setting; trio has none.
    loop = asyncio.get_running_loop()
    made: list[asyncio.Task[Any]] = []
    previous = loop.get_task_factory()

    def factory(
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        **kwargs: Any,
    ) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    app_tasks: list[asyncio.Task[Any] | None] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        app_tasks.append(asyncio.current_task())
        await send(start())
        await send(chunk(b"ok", more_body=False))

    loop.set_task_factory(factory)
    try:
        async with httpx.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
            response = await client.get("http://app/")
    finally:
        loop.set_task_factory(previous)
    assert response.text == "ok"
    assert app_tasks[0] in made
