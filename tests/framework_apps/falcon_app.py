"""The matrix app in Falcon (ASGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import falcon
import falcon.asgi
from falcon.asgi import Request as FalconRequest
from falcon.asgi import Response as FalconResponse

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
)

__all__ = ["falcon_app"]


class _FalconStartup:
    def __init__(self, started: dict[str, str]) -> None:
        self.started = started

    async def process_startup(self, scope: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        self.started["started"] = STARTED


class _FalconApp:
    """The resources, one responder per route."""

    def __init__(self, started: dict[str, str]) -> None:
        self.started = started

    async def on_get_json(self, req: FalconRequest, resp: FalconResponse) -> None:
        resp.media = JSON_BODY

    async def on_post_echo(self, req: FalconRequest, resp: FalconResponse) -> None:
        resp.data = await req.stream.read()
        resp.content_type = "application/octet-stream"

    async def on_get_stream(self, req: FalconRequest, resp: FalconResponse) -> None:
        resp.stream = gated_chunks(req.get_header("x-probe", default=""), STREAM_CHUNK)

    async def on_get_sse(self, req: FalconRequest, resp: FalconResponse) -> None:
        probe = req.get_header("x-probe", default="")

        async def events() -> AsyncIterator[falcon.asgi.SSEvent]:
            async for token in gated_tokens(probe):
                yield falcon.asgi.SSEvent(data=token.encode())

        resp.sse = events()

    async def on_get_status(self, req: FalconRequest, resp: FalconResponse, code: int) -> None:
        resp.status = code
        resp.data = status_body(code)

    async def on_get_raise(self, req: FalconRequest, resp: FalconResponse) -> None:
        raise RuntimeError("the handler failed")

    async def on_get_cookies(self, req: FalconRequest, resp: FalconResponse) -> None:
        for name, value in COOKIES:
            resp.set_cookie(name, value)
        resp.text = "cookies"

    async def on_get_latin1(self, req: FalconRequest, resp: FalconResponse) -> None:
        resp.set_header("x-latin", LATIN)
        resp.data = req.get_header("x-latin", default="").encode()

    async def on_get_inspect(self, req: FalconRequest, resp: FalconResponse, tail: str) -> None:
        query = [
            (key, value)
            for key, values in req.params.items()
            for value in (values if isinstance(values, list) else [values])
        ]
        resp.media = {"path": req.path, "tail": tail, "query": query}

    async def on_get_state(self, req: FalconRequest, resp: FalconResponse) -> None:
        resp.media = {"started": self.started.get("started")}

    async def on_get_where(self, req: FalconRequest, resp: FalconResponse) -> None:
        resp.media = {"path": req.path, "root_path": req.root_path}


def falcon_app() -> Any:
    started: dict[str, str] = {}
    resource = _FalconApp(started)
    app = falcon.asgi.App(middleware=[_FalconStartup(started)])
    for route, suffix in [
        ("json", "json"),
        ("echo", "echo"),
        ("stream", "stream"),
        ("sse", "sse"),
        ("status/{code:int}", "status"),
        ("raise", "raise"),
        ("cookies", "cookies"),
        ("latin1", "latin1"),
        ("inspect/{tail:path}", "inspect"),
        ("state", "state"),
        # Falcon mounts no ASGI apps; a route under the prefix stands for the sub-application.
        ("sub/where", "where"),
    ]:
        app.add_route(f"{BASE}/{route}", resource, suffix=suffix)
    return app
