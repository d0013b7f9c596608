"""Behaviour §5, §6 and §7: what must hold however the app, the caller or the loop fails."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import sniffio
from _uvicorn import running_server
from asgi import chunk, start

import aibridge_transport.httpx2
from aibridge_transport import (
    InProcessTransportFactory,
    LifespanError,
    Source,
    StreamingASGITransport,
    with_delegated_api_key_id,
)
from aibridge_transport.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.anyio

MODES = ["factory", "raise"]
FLAVOURS = ["httpx", "httpx2"]


class AppAbort(BaseException):
    """A `BaseException` that is neither `KeyboardInterrupt`, `SystemExit` nor a cancellation."""


class UploadError(Exception):
    pass


def make_client(mode: str, flavour: str, app: Any, **options: Any) -> Any:
    """A client of `flavour` over the factory (500 mode) or the raise-mode transport."""
    if mode == "factory":
        factory = InProcessTransportFactory(app, **options)
        transport = factory.transport_for("openai", Source.AGENTS, flavor=flavour)  # type: ignore[call-overload]
    elif flavour == "httpx":
        transport = StreamingASGITransport(app, **options)
    else:
        transport = aibridge_transport.httpx2.StreamingASGITransport(app, **options)
    client_class = httpx.AsyncClient if flavour == "httpx" else httpx2.AsyncClient
    return client_class(transport=transport, base_url="http://aibridge")


def protocol_error(flavour: str) -> type[Exception]:
    return httpx.RemoteProtocolError if flavour == "httpx" else httpx2.RemoteProtocolError


def app_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "aibridge_transport" and record.levelno >= logging.ERROR
    ]


@pytest.fixture(autouse=True)
def _delegated_key() -> Any:
    with with_delegated_api_key_id("key-1"):
        yield


class Neighbour:
    """A streaming exchange that runs beside a failing one and must end normally."""

    def __init__(self) -> None:
        self.release = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(chunk(b"first"))
        await self.release.wait()
        await send(chunk(b"last", more_body=False))


def with_neighbour(failing: Callable[..., Any], neighbour: Neighbour) -> Any:
    async def router(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].endswith("/neighbour"):
            await neighbour(scope, receive, send)
        else:
            await failing(scope, receive, send)

    return router


# -- 1. any BaseException of the app is a failure like any other ------------------------------


async def raises_custom_base_exception(scope: Scope, receive: Receive, send: Send) -> None:
    raise AppAbort("custom")


async def raises_group_of_base_exceptions(scope: Scope, receive: Receive, send: Send) -> None:
    async def child() -> None:
        raise AppAbort("in a child")

    async with anyio.create_task_group() as group:
        group.start_soon(child)


async def raises_cancelled_itself(scope: Scope, receive: Receive, send: Send) -> None:
    raise asyncio.CancelledError("raised by the app, not delivered")


FAILURES = {
    "custom": (raises_custom_base_exception, AppAbort),
    "group": (raises_group_of_base_exceptions, BaseExceptionGroup),
    "self-cancelled": (raises_cancelled_itself, asyncio.CancelledError),
}


def skip_self_cancel_on_trio(kind: str) -> None:
    if kind == "self-cancelled" and sniffio.current_async_library() == "trio":
        pytest.skip("trio's Cancelled cannot be raised by an app: only a cancel scope makes one")


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("kind", list(FAILURES))
async def test_base_exception_before_start_is_a_logged_500_and_others_carry_on(
    kind: str, flavour: str, caplog: pytest.LogCaptureFixture
) -> None:
    skip_self_cancel_on_trio(kind)
    failing, error_class = FAILURES[kind]
    neighbour = Neighbour()
    async with make_client("factory", flavour, with_neighbour(failing, neighbour)) as client:
        async with client.stream("GET", "/neighbour") as streaming:
            chunks = streaming.aiter_raw()
            assert await anext(chunks) == b"first"
            with caplog.at_level(logging.ERROR, logger="aibridge_transport"):
                response = await client.get("/fails")
            neighbour.release.set()
            assert [piece async for piece in chunks] == [b"last"]
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    [record] = app_failures(caplog)
    assert isinstance(record.exc_info and record.exc_info[1], error_class)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("kind", list(FAILURES))
async def test_base_exception_before_start_is_raised_in_raise_mode(kind: str, flavour: str) -> None:
    skip_self_cancel_on_trio(kind)
    failing, error_class = FAILURES[kind]
    neighbour = Neighbour()
    async with make_client("raise", flavour, with_neighbour(failing, neighbour)) as client:
        async with client.stream("GET", "/neighbour") as streaming:
            chunks = streaming.aiter_raw()
            assert await anext(chunks) == b"first"
            with pytest.raises(error_class):
                await client.get("/fails")
            neighbour.release.set()
            assert [piece async for piece in chunks] == [b"last"]


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("mode", MODES)
async def test_base_exception_after_start_is_as_an_exception(mode: str, flavour: str) -> None:
    # 500 mode: a protocol error caused by it; raise mode: the object itself (behaviour §7).
    raised: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(chunk(b"partial"))
        raised.append(AppAbort("after start"))
        raise raised[0]

    expected = protocol_error(flavour) if mode == "factory" else AppAbort
    async with make_client(mode, flavour, app) as client:
        async with client.stream("GET", "/x") as response:
            chunks = response.aiter_raw()
            assert await anext(chunks) == b"partial"
            with pytest.raises(expected) as info:
                await anext(chunks)
    if mode == "factory":
        assert info.value.__cause__ is raised[0]
    else:
        assert info.value is raised[0]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fatal", [SystemExit, KeyboardInterrupt])
async def test_fatal_error_inside_a_group_is_never_a_500(
    fatal: type[BaseException], mode: str
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # What a trio or anyio task group raises when a child raises it. (Built here: on
        # asyncio, the child task's own SystemExit leaves the event loop before any group.)
        raise BaseExceptionGroup("from a task group", [fatal()])

    async with make_client(mode, "httpx", app) as client:
        with pytest.raises(fatal):
            await client.get("/x")


async def lifespan_raising(error: BaseException) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        raise error

    return app


async def test_lifespan_startup_raising_a_base_exception_fails() -> None:
    factory = InProcessTransportFactory(await lifespan_raising(AppAbort("startup")))
    with pytest.raises(LifespanError) as info:
        async with factory:
            pytest.fail("the factory ran although its startup failed")
    assert isinstance(info.value.__cause__, AppAbort)


async def test_lifespan_startup_raising_system_exit_in_a_group_raises_it() -> None:
    error = BaseExceptionGroup("task group", [SystemExit(3)])
    factory = InProcessTransportFactory(await lifespan_raising(error))
    with pytest.raises(SystemExit) as info:
        async with factory:
            pytest.fail("the factory ran although its startup failed")
    assert info.value.code == 3


# -- 2. KeyboardInterrupt / SystemExit after the client left ------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("mode", MODES)
async def test_fatal_error_after_the_client_left_is_logged_and_raised_at_close(
    mode: str, flavour: str, caplog: pytest.LogCaptureFixture
) -> None:
    ended = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(start())
        await send(chunk(b"first"))
        assert (await receive())["type"] == "http.disconnect"
        ended.set()
        raise SystemExit(7)

    client = make_client(mode, flavour, app)
    with caplog.at_level(logging.ERROR, logger="aibridge_transport"):
        async with client.stream("GET", "/x") as response:
            assert await anext(response.aiter_raw()) == b"first"
        with anyio.fail_after(5):
            await ended.wait()
        # Logged as soon as the app ended, not only when someone closes the transport.
        [record] = app_failures(caplog)
    assert isinstance(record.exc_info and record.exc_info[1], SystemExit)
    with pytest.raises(SystemExit) as info:
        await client.aclose()
    assert info.value.code == 7
    await client.aclose()  # raised once


async def test_a_fatal_error_at_factory_close_still_closes_the_rest_and_shuts_down() -> None:
    ended = anyio.Event()
    shutdown: list[str] = []
    neighbour_cancelled = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    shutdown.append(message["type"])
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await receive()  # the empty request body
        if scope["path"].endswith("/fatal"):
            await send(start())
            await send(chunk(b"first"))
            assert (await receive())["type"] == "http.disconnect"
            ended.set()
            raise SystemExit(3)
        await send(start())
        await send(chunk(b"first"))
        try:
            await anyio.sleep_forever()
        finally:
            neighbour_cancelled.set()

    factory = InProcessTransportFactory(app)
    await factory.__aenter__()
    fatal = httpx.AsyncClient(
        transport=factory.transport_for("openai", Source.AGENTS), base_url="http://aibridge"
    )
    other = httpx.AsyncClient(
        transport=factory.transport_for("anthropic", Source.AGENTS), base_url="http://aibridge"
    )
    async with fatal.stream("GET", "/fatal") as response:
        assert await anext(response.aiter_raw()) == b"first"
    with anyio.fail_after(5):
        await ended.wait()
    held = await other.send(other.build_request("GET", "/held"), stream=True)
    # Whichever transport closes first, the factory closes both and runs shutdown, then
    # raises the app's SystemExit.
    with pytest.raises(SystemExit) as info:
        await factory.aclose()
    assert info.value.code == 3
    assert neighbour_cancelled.is_set()
    assert shutdown == ["lifespan.shutdown"]
    await held.aclose()


# -- 3. the caller's own request body fails -----------------------------------------------


class BodyReader:
    """Reads the request body to its end or a disconnect; starts the response first if told."""

    def __init__(self, *, start_first: bool = False) -> None:
        self.start_first = start_first
        self.messages: list[Message] = []
        self.ended = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if self.start_first:
                await send(start())
                await send(chunk(b"early"))
            while True:
                message = await receive()
                self.messages.append(message)
                if message["type"] == "http.disconnect":
                    # What frameworks do when the client is gone mid-body (Starlette raises
                    # ClientDisconnect): not an app failure either.
                    raise RuntimeError("client disconnected while the body was read")
                if not message.get("more_body", False):
                    break
            await send(start())
            await send(chunk(b"read", more_body=False))
        finally:
            self.ended.set()


def failing_upload(error: BaseException) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        yield b"part one"
        raise error

    return body()


@pytest.mark.parametrize("start_first", [False, True], ids=["before-start", "after-start"])
@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("mode", MODES)
async def test_caller_upload_error_is_raised_unchanged_and_never_a_500(
    mode: str, flavour: str, start_first: bool, caplog: pytest.LogCaptureFixture
) -> None:
    app = BodyReader(start_first=start_first)
    error = UploadError("the caller's own")
    options = {"strict": True} if mode == "factory" else {}
    client = make_client(mode, flavour, app, **options)
    with caplog.at_level(logging.DEBUG, logger="aibridge_transport"):
        with pytest.raises(UploadError) as info:
            await client.post("/x", content=failing_upload(error))
        with anyio.fail_after(5):
            await app.ended.wait()
        await client.aclose()  # strict mode would raise what it recorded
    assert info.value is error
    assert [message["type"] for message in app.messages] == ["http.request", "http.disconnect"]
    assert app_failures(caplog) == []


@pytest.mark.parametrize("start_first", [False, True], ids=["before-start", "after-start"])
async def test_caller_upload_error_over_a_socket_is_the_same(start_first: bool) -> None:
    # The yardstick (behaviour §7): httpx raises the body's exception from the request, over
    # a socket too, whether or not the app had started its response.
    error = UploadError("the caller's own")
    with running_server(BodyReader(start_first=start_first)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            with pytest.raises(UploadError) as info:
                await client.post("/x", content=failing_upload(error))
    assert info.value is error


# -- 4. several tasks of the app awaiting receive() at once --------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_concurrent_receive_calls_each_get_the_next_message(mode: str) -> None:
    second_waiting = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        await second_waiting.wait()  # the first receive() is inside this iterator now
        yield b"one"
        yield b"two"

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        bodies: list[bytes] = []

        async def first() -> None:
            bodies.append((await receive())["body"])

        async def second() -> None:
            second_waiting.set()
            bodies.append((await receive())["body"])

        async with anyio.create_task_group() as group:
            group.start_soon(first)
            group.start_soon(second)
        last = await receive()
        assert last == {"type": "http.request", "body": b"", "more_body": False}
        await send(start())
        await send(chunk(b",".join(bodies), more_body=False))

    async with make_client(mode, "httpx", app) as client:
        response = await client.post("/x", content=body())
    assert response.status_code == 200
    assert response.content == b"one,two"


@pytest.mark.parametrize("mode", MODES)
async def test_disconnect_watcher_beside_a_body_reader_sees_the_disconnect(mode: str) -> None:
    reading = anyio.Event()
    watching = anyio.Event()
    seen: list[str] = []
    ended = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"one"
        await anyio.sleep_forever()  # a caller that never finishes its upload
        yield b"never"

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(chunk(b"started"))

        async def read_body() -> None:
            assert (await receive())["body"] == b"one"
            reading.set()
            await receive()  # waits inside the caller's body

        async def watch() -> None:
            await reading.wait()
            watching.set()  # and in receive() before anyone else runs
            seen.append((await receive())["type"])
            group.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(read_body)
                group.start_soon(watch)
        finally:
            ended.set()

    async with make_client(mode, "httpx", app, disconnect_grace=60) as client:
        async with client.stream("POST", "/x", content=body()) as response:
            assert await anext(response.aiter_raw()) == b"started"
            await watching.wait()
        with anyio.fail_after(5):
            await ended.wait()
    assert seen == ["http.disconnect"]


# -- 5. the transport closed while a request waits for its start ---------------------------


@pytest.mark.parametrize("raise_on_cancel", [False, True], ids=["cancelled", "raises-on-cancel"])
@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("mode", MODES)
async def test_closing_the_transport_before_the_start_is_a_transport_error(
    mode: str, flavour: str, raise_on_cancel: bool
) -> None:
    waiting = anyio.Event()
    outcome: list[object] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        waiting.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            if raise_on_cancel:
                raise RuntimeError("cleanup failed") from None
            raise

    client = make_client(mode, flavour, app)

    async def request() -> None:
        try:
            outcome.append(await client.get("/x"))
        except Exception as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(request)
        await waiting.wait()
        await client.aclose()
    [error] = outcome
    assert isinstance(error, protocol_error(flavour))
    assert "transport was closed" in str(error)


# -- 6. content-length that disagrees with the body ----------------------------------------


def declaring(length: int, *chunks: bytes, status: int = 200) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start([(b"Content-Length", str(length).encode())], status=status))
        for piece in chunks[:-1]:
            await send(chunk(piece))
        await send(chunk(chunks[-1], more_body=False))

    return app


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("mode", MODES)
async def test_body_shorter_than_content_length_fails_at_the_end(mode: str, flavour: str) -> None:
    async with make_client(mode, flavour, declaring(10, b"abcd", b"")) as client:
        async with client.stream("GET", "/x") as response:
            chunks = response.aiter_raw()
            assert await anext(chunks) == b"abcd"
            with pytest.raises(protocol_error(flavour)):
                await anext(chunks)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("mode", MODES)
async def test_short_body_in_one_final_chunk_fails(mode: str, flavour: str) -> None:
    async with make_client(mode, flavour, declaring(10, b"abcd")) as client:
        with pytest.raises(protocol_error(flavour)):
            await client.get("/x")


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("mode", MODES)
async def test_body_longer_than_content_length_fails_on_the_chunk_past_it(
    mode: str, flavour: str
) -> None:
    async with make_client(mode, flavour, declaring(4, b"ab", b"cdef", b"")) as client:
        async with client.stream("GET", "/x") as response:
            chunks = response.aiter_raw()
            assert await anext(chunks) == b"ab"
            with pytest.raises(protocol_error(flavour)):
                await anext(chunks)


@pytest.mark.parametrize(
    ("method", "status"),
    [("HEAD", 200), ("GET", 204), ("GET", 304), ("GET", 200)],
    ids=["head", "204", "304", "exact"],
)
async def test_content_length_exemptions_and_exact_bodies_pass(method: str, status: int) -> None:
    body = b"0123456789" if (method, status) == ("GET", 200) else b""
    async with make_client("raise", "httpx", declaring(10, body, status=status)) as client:
        response = await client.request(method, "/x")
    assert response.status_code == status
    assert response.content == body


# -- 7. nothing an exchange arms outlives it ------------------------------------------------


class Marker:
    pass


app_marker: contextvars.ContextVar[Marker] = contextvars.ContextVar("app_marker")


@pytest.mark.parametrize("mode", MODES)
async def test_an_early_close_leaves_nothing_armed_once_the_app_ended(mode: str) -> None:
    references: list[weakref.ref[Marker]] = []
    ended = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # Alive as long as anything keeps the app's task or its context.
        marker = Marker()
        references.append(weakref.ref(marker))
        app_marker.set(marker)
        scope["marker"] = marker  # and as long as anything keeps the exchange
        del marker
        await receive()
        await send(start())
        await send(chunk(b"first"))
        assert (await receive())["type"] == "http.disconnect"
        ended.set()

    client = make_client(mode, "httpx", app, disconnect_grace=600)
    for _ in range(3):
        async with client.stream("GET", "/x") as response:
            assert await anext(response.aiter_raw()) == b"first"
        with anyio.fail_after(5):
            await ended.wait()
        ended = anyio.Event()
    del response
    gc.collect()
    assert [reference() for reference in references] == [None, None, None]
    await client.aclose()
