from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from asgi import chunk, start
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from aibridge_transport import (
    InProcessTransportFactory,
    LifespanError,
    Source,
    with_delegated_api_key_id,
)
from aibridge_transport.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.anyio

EVENTS: list[str] = []


@contextlib.asynccontextmanager
async def filled_state(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    EVENTS.append("startup")
    yield {"model": "gpt", "calls": []}
    EVENTS.append("shutdown")


async def show_state(request: Request) -> JSONResponse:
    # Replacing a key must not reach the next request: the state is copied per request.
    seen = request.state.model
    request.state.model = "changed by a request"
    return JSONResponse({"model": seen, "events": EVENTS})


stateful_app = Starlette(
    routes=[Route("/api/v2/aibridge/openai/v1/state", show_state)], lifespan=filled_state
)


@contextlib.asynccontextmanager
async def broken_startup(app: Starlette) -> AsyncIterator[None]:
    raise RuntimeError("the model registry is unreachable")
    yield  # pragma: no cover


broken_app = Starlette(lifespan=broken_startup)


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


no_lifespan_starlette = Starlette(routes=[Route("/api/v2/aibridge/openai/hello", hello)])


async def http_only_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    await send(start())
    await send(chunk(b"http only", more_body=False))


async def returns_at_once_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send(start())
    await send(chunk(b"returns at once", more_body=False))


async def raw_lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                EVENTS.append("raw shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(start())
    await send(chunk(repr(scope["state"]).encode(), more_body=False))


async def failing_shutdown_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    await send({"type": "lifespan.shutdown.failed", "message": "could not flush the cache"})


async def failed_message_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no GPU found"})


async def odd_reply_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    message: Message = {"type": "http.response.start", "status": 200}
    await send(message)


hanging_started: list[anyio.Event] = []


async def hanging_startup_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    hanging_started[-1].set()
    try:
        await anyio.sleep_forever()
    finally:
        EVENTS.append("startup cancelled")


async def raising_shutdown_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    raise RuntimeError("the connection pool would not close")


shutdown_entered: list[anyio.Event] = []


async def hanging_shutdown_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    shutdown_entered[-1].set()
    try:
        await anyio.sleep_forever()
    finally:
        EVENTS.append("shutdown cancelled")


def client(factory: InProcessTransportFactory) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=factory.transport_for("openai", Source.AGENTS), base_url="http://bridge"
    )


async def test_startup_fills_state_and_shutdown_runs_at_exit() -> None:
    EVENTS.clear()
    async with InProcessTransportFactory(stateful_app) as factory:
        assert EVENTS == ["startup"]
        with with_delegated_api_key_id("key-1"):
            response = await client(factory).get("/v1/state")
    assert response.json() == {"model": "gpt", "events": ["startup"]}
    assert EVENTS == ["startup", "shutdown"]


async def test_state_is_a_shallow_copy_per_request() -> None:
    async with InProcessTransportFactory(stateful_app) as factory:
        with with_delegated_api_key_id("key-1"):
            first = await client(factory).get("/v1/state")
            second = await client(factory).get("/v1/state")
    assert first.json()["model"] == "gpt"
    assert second.json()["model"] == "gpt"


async def test_raw_app_state_reaches_requests() -> None:
    EVENTS.clear()
    async with InProcessTransportFactory(raw_lifespan_app) as factory:
        with with_delegated_api_key_id("key-1"):
            response = await client(factory).get("/")
    assert response.text == "{'started': True}"
    assert EVENTS == ["raw shutdown"]


async def test_failed_startup_raises_with_the_apps_message() -> None:
    factory = InProcessTransportFactory(broken_app)
    with pytest.raises(LifespanError, match="the model registry is unreachable"):
        async with factory:
            pytest.fail("the body must not run after a failed startup")


async def test_startup_failed_message_is_quoted() -> None:
    with pytest.raises(LifespanError, match="lifespan startup failed: no GPU found"):
        async with InProcessTransportFactory(failed_message_app):
            pass


async def test_unexpected_startup_reply_raises() -> None:
    with pytest.raises(LifespanError, match=r"unexpected lifespan message 'http\.response\.start'"):
        async with InProcessTransportFactory(odd_reply_app):
            pass


async def test_failed_shutdown_raises_at_exit() -> None:
    with pytest.raises(LifespanError, match="could not flush the cache"):
        async with InProcessTransportFactory(failing_shutdown_app):
            pass


@pytest.mark.parametrize("app", [http_only_app, returns_at_once_app])
async def test_app_without_lifespan_support_works(app: Any) -> None:
    async with InProcessTransportFactory(app) as factory:
        with with_delegated_api_key_id("key-1"):
            response = await client(factory).get("/")
    assert response.status_code == 200
    assert response.content in (b"http only", b"returns at once")


async def test_starlette_app_without_lifespan_handler_gets_empty_state() -> None:
    async with InProcessTransportFactory(no_lifespan_starlette) as factory:
        with with_delegated_api_key_id("key-1"):
            response = await client(factory).get("/hello")
    assert response.text == "hello"


async def test_without_async_with_no_lifespan_runs_and_requests_work() -> None:
    EVENTS.clear()
    factory = InProcessTransportFactory(raw_lifespan_app)
    with with_delegated_api_key_id("key-1"):
        response = await client(factory).get("/")
    await factory.aclose()
    assert response.text == "{}"
    assert EVENTS == []


async def test_cancelled_startup_leaves_no_lifespan_task() -> None:
    EVENTS.clear()
    hanging_started.append(anyio.Event())
    factory = InProcessTransportFactory(hanging_startup_app)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:

            async def enter() -> None:
                async with factory:
                    pytest.fail("startup never completes")

            group.start_soon(enter)
            await hanging_started[-1].wait()
            scope.cancel()
    assert scope.cancelled_caught
    # The lifespan task was cancelled and awaited before the cancellation went on.
    assert EVENTS == ["startup cancelled"]


async def test_shutdown_that_raises_is_reported() -> None:
    with pytest.raises(LifespanError, match="the connection pool would not close") as caught:
        async with InProcessTransportFactory(raising_shutdown_app):
            pass
    assert isinstance(caught.value.__cause__, RuntimeError)


async def test_cancelled_shutdown_leaves_no_lifespan_task() -> None:
    EVENTS.clear()
    shutdown_entered.append(anyio.Event())
    factory = InProcessTransportFactory(hanging_shutdown_app)
    await factory.__aenter__()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(factory.aclose)
            await shutdown_entered[-1].wait()
            scope.cancel()
    assert scope.cancelled_caught
    assert EVENTS == ["shutdown cancelled"]
