"""The matrix app in BlackSheep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import blacksheep
import blacksheep.server.responses
import blacksheep.server.sse

from .common import (
    BASE,
    COOKIES,
    JSON_BODY,
    LATIN,
    STARTED,
    STREAM_CHUNK,
    gated_chunks,
    gated_tokens,
    status_body,
    where,
)

__all__ = ["blacksheep_app"]


def blacksheep_app() -> Any:
    app = blacksheep.Application()
    started: dict[str, str] = {}

    async def on_start(application: blacksheep.Application) -> None:
        started["started"] = STARTED

    app.on_start += on_start

    def text(body: bytes, content_type: bytes = b"text/plain") -> blacksheep.Content:
        return blacksheep.Content(content_type, body)

    async def json_() -> blacksheep.Response:
        return blacksheep.server.responses.json(JSON_BODY)

    async def echo(request: blacksheep.Request) -> blacksheep.Response:
        body = await request.read() or b""
        return blacksheep.Response(200, None, text(body, b"application/octet-stream"))

    async def stream(request: blacksheep.Request) -> blacksheep.Response:
        probe = (request.get_first_header(b"x-probe") or b"").decode()

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in gated_chunks(probe, STREAM_CHUNK):
                yield chunk

        content = blacksheep.StreamedContent(b"application/octet-stream", chunks)
        return blacksheep.Response(200, None, content)

    async def sse(request: blacksheep.Request) -> blacksheep.Response:
        probe = (request.get_first_header(b"x-probe") or b"").decode()

        async def events() -> AsyncIterator[blacksheep.server.sse.ServerSentEvent]:
            async for token in gated_tokens(probe):
                yield blacksheep.server.sse.ServerSentEvent(token)

        return blacksheep.server.sse.ServerSentEventsResponse(events)

    async def status(code: int) -> blacksheep.Response:
        body = status_body(code)
        return blacksheep.Response(code, None, text(body) if body else None)

    async def raise_() -> blacksheep.Response:
        raise RuntimeError("the handler failed")

    async def cookies() -> blacksheep.Response:
        response = blacksheep.Response(200, None, text(b"cookies"))
        for name, value in COOKIES:
            response.set_cookie(blacksheep.Cookie(name, value))
        return response

    async def latin1(request: blacksheep.Request) -> blacksheep.Response:
        value = request.get_first_header(b"x-latin") or b""
        headers = [(b"x-latin", LATIN.encode("latin-1"))]
        return blacksheep.Response(200, headers, text(value))

    async def inspect(request: blacksheep.Request, tail: str) -> blacksheep.Response:
        query = [(key, value) for key, values in request.query.items() for value in values]
        path = request.url.path.decode()
        return blacksheep.server.responses.json({"path": path, "tail": tail, "query": query})

    async def state() -> blacksheep.Response:
        return blacksheep.server.responses.json({"started": started.get("started")})

    router = app.router
    router.add_get(f"{BASE}/json", json_)
    router.add_post(f"{BASE}/echo", echo)
    router.add_get(f"{BASE}/stream", stream)
    router.add_get(f"{BASE}/sse", sse)
    router.add_get(f"{BASE}/status/{{int:code}}", status)
    router.add_get(f"{BASE}/raise", raise_)
    router.add_get(f"{BASE}/cookies", cookies)
    router.add_get(f"{BASE}/latin1", latin1)
    router.add_get(f"{BASE}/inspect/{{path:tail}}", inspect)
    router.add_get(f"{BASE}/state", state)
    app.mount(f"{BASE}/sub", where)
    return app
