"""The matrix app in Starlette and FastAPI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import fastapi
import fastapi.responses
import starlette.applications
import starlette.background
import starlette.requests
import starlette.responses
import starlette.routing
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse

from .common import (
    BASE,
    COOKIES,
    JSON_BODY,
    LATIN,
    SSE_EVENT,
    STARTED,
    STREAM_CHUNK,
    after_response,
    gated_chunks,
    probe_of,
    status_body,
    where,
)

__all__ = ["fastapi_app", "starlette_app"]


def starlette_app() -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: starlette.applications.Starlette) -> AsyncIterator[dict[str, str]]:
        yield {"started": STARTED}

    async def json_(request: StarletteRequest) -> StarletteResponse:
        return starlette.responses.JSONResponse(JSON_BODY)

    async def echo(request: StarletteRequest) -> StarletteResponse:
        return StarletteResponse(await request.body(), media_type="application/octet-stream")

    async def stream(request: StarletteRequest) -> StarletteResponse:
        chunks = gated_chunks(probe_of(request.headers), STREAM_CHUNK)
        return starlette.responses.StreamingResponse(chunks)

    async def sse(request: StarletteRequest) -> StarletteResponse:
        chunks = gated_chunks(probe_of(request.headers), SSE_EVENT)
        return starlette.responses.StreamingResponse(chunks, media_type="text/event-stream")

    async def status(request: StarletteRequest) -> StarletteResponse:
        code = int(request.path_params["code"])
        return StarletteResponse(status_body(code), status_code=code)

    async def raise_(request: StarletteRequest) -> StarletteResponse:
        raise RuntimeError("the handler failed")

    async def cookies(request: StarletteRequest) -> StarletteResponse:
        response = StarletteResponse(b"cookies")
        for name, value in COOKIES:
            response.set_cookie(name, value)
        return response

    async def latin1(request: StarletteRequest) -> StarletteResponse:
        body = request.headers.get("x-latin", "").encode()
        return StarletteResponse(body, headers={"x-latin": LATIN})

    async def inspect(request: StarletteRequest) -> StarletteResponse:
        return starlette.responses.JSONResponse(
            {
                "path": request.url.path,
                "tail": request.path_params["tail"],
                "query": list(request.query_params.multi_items()),
            }
        )

    async def state(request: StarletteRequest) -> StarletteResponse:
        started = getattr(request.state, "started", None)
        return starlette.responses.JSONResponse({"started": started})

    async def background(request: StarletteRequest) -> StarletteResponse:
        task = starlette.background.BackgroundTask(after_response, probe_of(request.headers))
        return StarletteResponse(b"sent", background=task)

    Route = starlette.routing.Route
    return starlette.applications.Starlette(
        routes=[
            Route(f"{BASE}/json", json_),
            Route(f"{BASE}/echo", echo, methods=["POST"]),
            Route(f"{BASE}/stream", stream),
            Route(f"{BASE}/sse", sse),
            Route(f"{BASE}/status/{{code:int}}", status),
            Route(f"{BASE}/raise", raise_),
            Route(f"{BASE}/cookies", cookies),
            Route(f"{BASE}/latin1", latin1),
            Route(f"{BASE}/inspect/{{tail:path}}", inspect),
            Route(f"{BASE}/state", state),
            Route(f"{BASE}/background", background),
            starlette.routing.Mount(f"{BASE}/sub", where),
        ],
        lifespan=lifespan,
    )


def fastapi_app() -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: fastapi.FastAPI) -> AsyncIterator[dict[str, str]]:
        yield {"started": STARTED}

    app = fastapi.FastAPI(lifespan=lifespan, openapi_url=None)

    @app.get(f"{BASE}/json")
    async def json_() -> dict[str, Any]:
        return JSON_BODY

    @app.post(f"{BASE}/echo")
    async def echo(request: fastapi.Request) -> fastapi.Response:
        return fastapi.Response(await request.body(), media_type="application/octet-stream")

    @app.get(f"{BASE}/stream")
    async def stream(request: fastapi.Request) -> fastapi.responses.StreamingResponse:
        chunks = gated_chunks(probe_of(request.headers), STREAM_CHUNK)
        return fastapi.responses.StreamingResponse(chunks)

    @app.get(f"{BASE}/sse")
    async def sse(request: fastapi.Request) -> fastapi.responses.StreamingResponse:
        chunks = gated_chunks(probe_of(request.headers), SSE_EVENT)
        return fastapi.responses.StreamingResponse(chunks, media_type="text/event-stream")

    @app.get(f"{BASE}/status/{{code}}")
    async def status(code: int) -> fastapi.Response:
        return fastapi.Response(status_body(code), status_code=code)

    @app.get(f"{BASE}/raise")
    async def raise_() -> None:
        raise RuntimeError("the handler failed")

    @app.get(f"{BASE}/cookies")
    async def cookies(response: fastapi.Response) -> str:
        for name, value in COOKIES:
            response.set_cookie(name, value)
        return "cookies"

    @app.get(f"{BASE}/latin1")
    async def latin1(request: fastapi.Request) -> fastapi.Response:
        body = request.headers.get("x-latin", "").encode()
        return fastapi.Response(body, headers={"x-latin": LATIN})

    @app.get(f"{BASE}/inspect/{{tail:path}}")
    async def inspect(request: fastapi.Request, tail: str) -> dict[str, Any]:
        return {
            "path": request.url.path,
            "tail": tail,
            "query": list(request.query_params.multi_items()),
        }

    @app.get(f"{BASE}/state")
    async def state(request: fastapi.Request) -> dict[str, Any]:
        return {"started": getattr(request.state, "started", None)}

    @app.get(f"{BASE}/background")
    async def background(request: fastapi.Request, tasks: fastapi.BackgroundTasks) -> str:
        tasks.add_task(after_response, probe_of(request.headers))
        return "sent"

    app.mount(f"{BASE}/sub", where)
    return app
