"""The matrix app in Litestar."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import litestar
import litestar.background_tasks
import litestar.datastructures
import litestar.handlers
import litestar.params
import litestar.response

from aibridge_transport.types import Receive, Scope, Send

from .common import (
    BASE,
    COOKIES,
    JSON_BODY,
    LATIN,
    STARTED,
    STREAM_CHUNK,
    after_response,
    gated_chunks,
    gated_tokens,
    probe_of,
    status_body,
    where,
)

__all__ = ["litestar_app"]

# Annotations Litestar resolves at run time must name module-level objects.
LitestarRequest = litestar.Request[Any, Any, Any]


def litestar_app() -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: litestar.Litestar) -> AsyncIterator[None]:
        app.state.started = STARTED
        yield

    @litestar.get(f"{BASE}/json")
    async def json_() -> dict[str, Any]:
        return JSON_BODY

    @litestar.post(f"{BASE}/echo", status_code=200, media_type="application/octet-stream")
    async def echo(request: LitestarRequest) -> bytes:
        return await request.body()

    @litestar.get(f"{BASE}/stream")
    async def stream(request: LitestarRequest) -> litestar.response.Stream:
        return litestar.response.Stream(gated_chunks(probe_of(request.headers), STREAM_CHUNK))

    @litestar.get(f"{BASE}/sse")
    async def sse(request: LitestarRequest) -> litestar.response.ServerSentEvent:
        return litestar.response.ServerSentEvent(gated_tokens(probe_of(request.headers)))

    @litestar.get(f"{BASE}/status/{{code:int}}")
    async def status(code: litestar.params.FromPath[int]) -> litestar.Response[bytes]:
        return litestar.Response(status_body(code), status_code=code)

    @litestar.get(f"{BASE}/raise")
    async def raise_() -> None:
        raise RuntimeError("the handler failed")

    @litestar.get(f"{BASE}/cookies")
    async def cookies() -> litestar.Response[str]:
        response = litestar.Response("cookies")
        for name, value in COOKIES:
            response.set_cookie(name, value)
        return response

    @litestar.get(f"{BASE}/latin1")
    async def latin1(request: LitestarRequest) -> litestar.Response[bytes]:
        body = request.headers.get("x-latin", "").encode()
        return litestar.Response(body, headers={"x-latin": LATIN})

    @litestar.get(f"{BASE}/inspect/{{tail:path}}")
    async def inspect(
        request: LitestarRequest, tail: litestar.params.FromPath[str]
    ) -> dict[str, Any]:
        return {
            "path": request.url.path,
            "tail": tail,
            "query": list(request.query_params.multi_items()),
        }

    @litestar.get(f"{BASE}/state")
    async def state(state: litestar.datastructures.State) -> dict[str, Any]:
        return {"started": state.get("started")}

    @litestar.get(f"{BASE}/background")
    async def background(request: LitestarRequest) -> litestar.Response[bytes]:
        task = litestar.background_tasks.BackgroundTask(after_response, probe_of(request.headers))
        return litestar.Response(b"sent", background=task)

    @litestar.handlers.asgi(f"{BASE}/sub", is_mount=True, copy_scope=True)
    async def sub(scope: Scope, receive: Receive, send: Send) -> None:
        await where(scope, receive, send)

    handlers = [
        *(json_, echo, stream, sse, status, raise_, cookies, latin1, inspect, state),
        *(background, sub),
    ]
    # No `logging_config`: Litestar's default one reconfigures the root logger of the process.
    return litestar.Litestar(
        route_handlers=handlers, lifespan=[lifespan], openapi_config=None, logging_config=None
    )
