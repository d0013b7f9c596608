"""Behaviour §7: what the caller sees when the app misbehaves, in both modes."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx
import pytest
from asgi import chunk, start

from aibridge_transport import (
    InProcessTransportFactory,
    Source,
    StreamingASGITransport,
    with_delegated_api_key_id,
)
from aibridge_transport.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio


class AppError(Exception):
    pass


# Sent by every app below: no log line may show it.
SECRET = [(b"x-secret", b"s3cr3t")]


async def raises_before_start(scope: Scope, receive: Receive, send: Send) -> None:
    raise AppError("before start")


async def raises_after_start(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start(SECRET))
    await send(chunk(b"partial"))
    raise AppError("after start")


async def returns_without_start(scope: Scope, receive: Receive, send: Send) -> None:
    return


async def returns_incomplete(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start(SECRET))
    await send(chunk(b"partial"))


async def raises_after_complete(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start(SECRET))
    await send(chunk(b"complete", more_body=False))
    raise AppError("after complete")


async def body_before_start(scope: Scope, receive: Receive, send: Send) -> None:
    await send(chunk(b"x"))


async def start_twice(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start(SECRET))
    await send(start(SECRET))


async def send_after_complete(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start(SECRET))
    await send(chunk(b"done", more_body=False))
    await send(chunk(b"more"))


async def unknown_message(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.trailers", "headers": []})


async def keyboard_interrupt(scope: Scope, receive: Receive, send: Send) -> None:
    raise KeyboardInterrupt


def factory_client(app: Any, **options: Any) -> httpx.AsyncClient:
    factory = InProcessTransportFactory(app, **options)
    return httpx.AsyncClient(
        transport=factory.transport_for("openai", Source.AGENTS), base_url="http://aibridge"
    )


def raising_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=StreamingASGITransport(app=app), base_url="http://app")


@pytest.fixture(autouse=True)
def _delegated_key() -> Any:
    with with_delegated_api_key_id("key-1"):
        yield


async def test_raise_before_start_is_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async with factory_client(raises_before_start) as client:
        with caplog.at_level(logging.ERROR, logger="aibridge_transport"):
            response = await client.post("/v1/chat/completions", content=b"secret body")
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "Internal Server Error"
    [record] = caplog.records
    assert record.name == "aibridge_transport"
    assert "provider=openai" in record.getMessage()
    assert "source=agents" in record.getMessage()
    assert "secret body" not in caplog.text
    assert isinstance(record.exc_info and record.exc_info[1], AppError)


async def test_raise_before_start_raises_the_same_exception_in_raise_mode() -> None:
    seen: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        error = AppError("the one")
        seen.append(error)
        raise error

    async with raising_client(app) as client:
        with pytest.raises(AppError) as info:
            await client.get("/")
    assert info.value is seen[0]


async def test_raise_after_start_delivers_chunks_then_protocol_error() -> None:
    async with factory_client(raises_after_start) as client:
        async with client.stream("GET", "/x") as response:
            iterator = response.aiter_raw()
            assert await anext(iterator) == b"partial"
            with pytest.raises(httpx.RemoteProtocolError) as info:
                await anext(iterator)
    assert isinstance(info.value.__cause__, AppError)


async def test_raise_after_start_delivers_chunks_then_the_same_exception_in_raise_mode() -> None:
    # What httpx.ASGITransport and Starlette's TestClient raise: FastAPI's
    # ResponseValidationError must reach the test as itself (behaviour §7).
    seen: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(SECRET))
        await send(chunk(b"partial"))
        error = AppError("the one")
        seen.append(error)
        raise error

    async with raising_client(app) as client:
        async with client.stream("GET", "/x") as response:
            iterator = response.aiter_raw()
            assert await anext(iterator) == b"partial"
            with pytest.raises(AppError) as info:
                await anext(iterator)
    assert info.value is seen[0]


def test_raise_after_start_raises_the_same_exception_from_a_sync_read_in_raise_mode() -> None:
    # The sync transport reads through the same exchange (behaviour §7, §12).
    seen: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(SECRET))
        await send(chunk(b"partial"))
        error = AppError("the one")
        seen.append(error)
        raise error

    with httpx.Client(transport=StreamingASGITransport(app), base_url="http://app") as client:
        with client.stream("GET", "/") as response:
            chunks = response.iter_raw()
            assert next(chunks) == b"partial"
            with pytest.raises(AppError) as info:
                next(chunks)
    assert info.value is seen[0]


async def test_a_starlette_stream_that_fails_raises_as_under_httpx_asgi_transport() -> None:
    # Starlette's ServerErrorMiddleware re-raises what fails after the start: raise mode hands
    # that very exception to the test, as httpx.ASGITransport does (behaviour §7).
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def tokens() -> Any:
        yield b"token"
        raise AppError("the stream broke")

    async def endpoint(request: Any) -> StreamingResponse:
        return StreamingResponse(tokens())

    app = Starlette(routes=[Route("/", endpoint)])
    outcomes: list[str] = []
    for transport in (httpx.ASGITransport(app), StreamingASGITransport(app)):
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            with pytest.raises(AppError, match="the stream broke"):
                await client.get("/")
        outcomes.append(type(transport).__name__)
    assert outcomes == ["ASGITransport", "StreamingASGITransport"]


async def test_return_without_start_is_500(caplog: pytest.LogCaptureFixture) -> None:
    async with factory_client(returns_without_start) as client:
        with caplog.at_level(logging.ERROR, logger="aibridge_transport"):
            response = await client.get("/x")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert "returned without starting response" in caplog.text


async def test_return_without_start_raises_runtime_error_in_raise_mode() -> None:
    async with raising_client(returns_without_start) as client:
        with pytest.raises(RuntimeError, match="without starting the response"):
            await client.get("/")


@pytest.mark.parametrize("make_client", [factory_client, raising_client])
async def test_incomplete_response_is_a_protocol_error(make_client: Any) -> None:
    async with make_client(returns_incomplete) as client:
        async with client.stream("GET", "/x") as response:
            iterator = response.aiter_raw()
            assert await anext(iterator) == b"partial"
            with pytest.raises(httpx.RemoteProtocolError, match="incomplete response"):
                await anext(iterator)


async def test_raise_after_complete_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async with factory_client(raises_after_complete, disconnect_grace=5) as client:
        with caplog.at_level(logging.ERROR, logger="aibridge_transport"):
            response = await client.get("/x")
            await client.aclose()  # waits for the app task, so the log line is there
    assert response.text == "complete"
    assert "after completing the response" in caplog.text
    assert "s3cr3t" not in caplog.text


async def test_raise_after_complete_is_raised_at_close_in_raise_mode() -> None:
    async with raising_client(raises_after_complete) as client:
        async with client.stream("GET", "/") as response:
            iterator = response.aiter_raw()
            assert await anext(iterator) == b"complete"
            # Reading to the end closes the response, which waits for the app and raises.
            with pytest.raises(AppError, match="after complete"):
                await anext(iterator)


@pytest.mark.parametrize(
    ("app", "violation"),
    [
        (body_before_start, "before 'http.response.start'"),
        (start_twice, "'http.response.start' twice"),
        (send_after_complete, "after the response was complete"),
        (unknown_message, "unknown message type 'http.response.trailers'"),
    ],
)
async def test_protocol_violations_raise_in_send(app: Any, violation: str) -> None:
    errors: list[BaseException] = []

    async def watching(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except RuntimeError as error:
            errors.append(error)
            raise

    async with raising_client(watching) as client:
        with pytest.raises((RuntimeError, httpx.RemoteProtocolError)):
            response = await client.get("/")
            await response.aclose()
    assert len(errors) == 1
    assert violation in str(errors[0])


async def test_protocol_violation_is_500_in_factory_mode() -> None:
    async with factory_client(body_before_start) as client:
        response = await client.get("/x")
    assert response.status_code == 500


async def test_violation_detected_even_after_disconnect() -> None:
    disconnected = anyio.Event()
    errors: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # the request body
        await send(start(SECRET))
        await send(chunk(b"a"))
        assert (await receive())["type"] == "http.disconnect"
        try:
            await send(start(SECRET))
        except RuntimeError as error:
            errors.append(error)
        disconnected.set()

    async with raising_client(app) as client:
        async with client.stream("GET", "/") as response:
            await anext(response.aiter_raw())
        with anyio.fail_after(5):
            await disconnected.wait()
    assert "twice" in str(errors[0])


@pytest.mark.parametrize("make_client", [factory_client, raising_client])
async def test_keyboard_interrupt_is_never_a_500(make_client: Any) -> None:
    async with make_client(keyboard_interrupt) as client:
        with pytest.raises(KeyboardInterrupt):
            await client.get("/x")


@pytest.mark.parametrize(
    "status", [200.0, "200", True, 99, 600, None], ids=["float", "str", "bool", "99", "600", "none"]
)
async def test_malformed_status_is_refused(status: object) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})

    async with raising_client(app) as client:
        with pytest.raises(RuntimeError, match="status must be an int"):
            await client.get("/")


@pytest.mark.parametrize(
    "headers",
    [[(b"a",)], [(1, b"v")], [(b"a", None)], b"a: b", [(b"a b", b"v")], [(b"a", b"v\r\nx: y")]],
    ids=["single", "int-name", "none-value", "bytes", "space-in-name", "crlf-in-value"],
)
async def test_malformed_headers_are_refused(headers: object) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})

    async with raising_client(app) as client:
        with pytest.raises(RuntimeError, match="header"):
            await client.get("/")


async def test_malformed_body_is_refused() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(SECRET))
        await send({"type": "http.response.body", "body": "text, not bytes"})

    async with factory_client(app) as client:
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await client.get("/x")
    assert "must be bytes" in str(info.value.__cause__)
    # Raise mode: the RuntimeError the app's send() raised, as the app raised it.
    async with raising_client(app) as client:
        with pytest.raises(RuntimeError, match="must be bytes"):
            await client.get("/")


async def test_strict_mode_reraises_hidden_exceptions_at_close() -> None:
    factory = InProcessTransportFactory(raises_before_start, strict=True)
    client = httpx.AsyncClient(transport=factory.transport_for("openai", Source.AGENTS))
    response = await client.get("http://aibridge/x")
    assert response.status_code == 500
    await client.aclose()
    with pytest.raises(AppError, match="before start"):
        await factory.aclose()


async def test_never_an_exception_group() -> None:
    async def app_with_task_group(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(SECRET))
        async with anyio.create_task_group() as group:

            async def fail() -> None:
                raise AppError("in a child")

            group.start_soon(fail)

    async with factory_client(app_with_task_group) as client:
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await client.get("/x")
    assert not isinstance(info.value, BaseExceptionGroup)
    # Raise mode raises the app's own exception, which here is its task group's own group.
    async with raising_client(app_with_task_group) as client:
        with pytest.raises(BaseExceptionGroup) as group:
            await client.get("/")
    assert group.group_contains(AppError, match="in a child")
