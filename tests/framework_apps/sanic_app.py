"""The matrix app in Sanic (ASGI mode)."""

from __future__ import annotations

from typing import Any

import sanic
import sanic.response
from sanic.response import HTTPResponse

from .common import (
    BASE,
    COOKIES,
    JSON_BODY,
    LATIN,
    SSE_EVENT,
    STARTED,
    STREAM_CHUNK,
    gated_chunks,
    serial,
    status_body,
)

__all__ = ["sanic_app"]


async def _sanic_gated(request: sanic.Request, template: str, content_type: str) -> None:
    streamed = await request.respond(content_type=content_type)
    async for chunk in gated_chunks(request.headers.get("x-probe", ""), template):
        await streamed.send(chunk)
    await streamed.eof()


def sanic_app() -> Any:
    response = sanic.response
    # At each app's startup Sanic rewrites methods of its own classes from their source
    # ("touchup"), which works once per process unless test mode keeps the originals; here
    # many apps start in one process.
    sanic.Sanic.test_mode = True
    # Sanic keeps a registry of apps by name: one name per instance. Its own logging setup
    # would lower the root logger's level for the whole process (and every later test).
    app = sanic.Sanic(f"matrix_sanic_{next(serial)}", configure_logging=False)

    @app.before_server_start
    async def startup(app: sanic.Sanic[Any, Any]) -> None:
        app.ctx.started = STARTED

    @app.get(f"{BASE}/json")
    async def json_(request: sanic.Request) -> HTTPResponse:
        return response.json(JSON_BODY)

    @app.post(f"{BASE}/echo")
    async def echo(request: sanic.Request) -> HTTPResponse:
        return response.raw(request.body, content_type="application/octet-stream")

    @app.get(f"{BASE}/stream")
    async def stream(request: sanic.Request) -> None:
        await _sanic_gated(request, STREAM_CHUNK, "application/octet-stream")

    @app.get(f"{BASE}/sse")
    async def sse(request: sanic.Request) -> None:
        await _sanic_gated(request, SSE_EVENT, "text/event-stream")

    @app.get(f"{BASE}/status/<code:int>")
    async def status(request: sanic.Request, code: int) -> HTTPResponse:
        return response.raw(status_body(code), status=code, content_type="text/plain")

    @app.get(f"{BASE}/raise")
    async def raise_(request: sanic.Request) -> HTTPResponse:
        raise RuntimeError("the handler failed")

    @app.get(f"{BASE}/cookies")
    async def cookies(request: sanic.Request) -> HTTPResponse:
        result = response.text("cookies")
        for name, value in COOKIES:
            result.add_cookie(name, value, secure=False)
        return result

    @app.get(f"{BASE}/latin1")
    async def latin1(request: sanic.Request) -> HTTPResponse:
        value = request.headers.get("x-latin", "")
        return response.raw(value.encode(), headers={"x-latin": LATIN})

    @app.get(f"{BASE}/inspect/<tail:path>")
    async def inspect(request: sanic.Request, tail: str) -> HTTPResponse:
        query = request.get_query_args(keep_blank_values=True)
        return response.json({"path": request.path, "tail": tail, "query": query})

    @app.get(f"{BASE}/state")
    async def state(request: sanic.Request) -> HTTPResponse:
        return response.json({"started": getattr(request.app.ctx, "started", None)})

    # Sanic mounts no ASGI apps; a blueprint under the prefix is its sub-application.
    sub = sanic.Blueprint(f"sub_{next(serial)}", url_prefix=f"{BASE}/sub")

    @sub.get("/where")
    async def sub_where(request: sanic.Request) -> HTTPResponse:
        return response.json({"path": request.path})

    app.blueprint(sub)
    return app
