"""The matrix app in Quart."""

from __future__ import annotations

from typing import Any

import quart

from .common import (
    BASE,
    COOKIES,
    JSON_BODY,
    LATIN,
    SSE_EVENT,
    STARTED,
    STREAM_CHUNK,
    gated_chunks,
    probe_of,
    serial,
    status_body,
)

__all__ = ["quart_app"]


def quart_app() -> Any:
    request = quart.request
    app = quart.Quart(f"matrix_quart_{next(serial)}")

    @app.before_serving
    async def startup() -> None:
        app.config["STARTED"] = STARTED

    @app.get(f"{BASE}/json")
    async def json_() -> dict[str, Any]:
        return JSON_BODY

    @app.post(f"{BASE}/echo")
    async def echo() -> quart.Response:
        body = await request.get_data()
        return quart.Response(body, content_type="application/octet-stream")

    @app.get(f"{BASE}/stream")
    async def stream() -> quart.Response:
        return quart.Response(gated_chunks(probe_of(request.headers), STREAM_CHUNK))

    @app.get(f"{BASE}/sse")
    async def sse() -> quart.Response:
        chunks = gated_chunks(probe_of(request.headers), SSE_EVENT)
        return quart.Response(chunks, content_type="text/event-stream")

    @app.get(f"{BASE}/status/<int:code>")
    async def status(code: int) -> quart.Response:
        return quart.Response(status_body(code), status=code)

    @app.get(f"{BASE}/raise")
    async def raise_() -> quart.Response:
        raise RuntimeError("the handler failed")

    @app.get(f"{BASE}/cookies")
    async def cookies() -> quart.Response:
        response = quart.Response("cookies")
        for name, value in COOKIES:
            response.set_cookie(name, value)
        return response

    @app.get(f"{BASE}/latin1")
    async def latin1() -> quart.Response:
        response = quart.Response(request.headers.get("x-latin", "").encode())
        response.headers["x-latin"] = LATIN
        return response

    @app.get(f"{BASE}/inspect/<path:tail>")
    async def inspect(tail: str) -> dict[str, Any]:
        return {"path": request.path, "tail": tail, "query": list(request.args.items(multi=True))}

    @app.get(f"{BASE}/state")
    async def state() -> dict[str, Any]:
        return {"started": app.config.get("STARTED")}

    # Quart mounts no ASGI apps; a blueprint under a prefix is its sub-application.
    sub = quart.Blueprint("sub", __name__, url_prefix=f"{BASE}/sub")

    @sub.get("/where")
    async def sub_where() -> dict[str, Any]:
        return {"path": request.path, "root_path": request.root_path}

    app.register_blueprint(sub)
    return app
