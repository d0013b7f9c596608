"""The one Starlette app every client in the benchmark talks to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio.lowlevel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route

__all__ = [
    "BRIDGE_PREFIX",
    "CHUNK_SIZE",
    "ECHO_SIZE",
    "PROGRESS",
    "SSE_EVENT",
    "SSE_EVENTS",
    "STREAM_SIZE",
    "app",
]

CHUNK_SIZE = 64 * 1024
STREAM_SIZE = 8 * 1024 * 1024
ECHO_SIZE = 1024 * 1024
SSE_EVENTS = 500
SSE_EVENT = b"data: " + b"x" * 92 + b"\n\n"
assert len(SSE_EVENT) == 100

# The in-process factory places every request under this prefix (behaviour §3); the other
# clients send their requests there themselves, so that every client reaches the same route.
BRIDGE_PREFIX = "/api/v2/aibridge/openai"


class Progress:
    """How many chunks the stream endpoint has produced (read by the slow-consumer scenario)."""

    produced = 0


PROGRESS = Progress()


async def small(request: Request) -> Response:
    return JSONResponse({"id": "chatcmpl-1", "object": "chat.completion", "ok": True})


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


async def _chunks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // CHUNK_SIZE):
        PROGRESS.produced += 1
        # A fresh object per chunk, as an app that produces data would: memory measurements
        # then show how many chunks are alive at once.
        yield b"x" * CHUNK_SIZE


async def stream(request: Request) -> Response:
    size = int(request.query_params.get("size", STREAM_SIZE))
    return StreamingResponse(_chunks(size), media_type="application/octet-stream")


async def _events() -> AsyncIterator[bytes]:
    for _ in range(SSE_EVENTS):
        yield SSE_EVENT
        await anyio.lowlevel.checkpoint()


async def sse(request: Request) -> Response:
    return StreamingResponse(_events(), media_type="text/event-stream")


_routes: list[BaseRoute] = [
    Route("/small", small),
    Route("/echo", echo, methods=["POST"]),
    Route("/stream", stream),
    Route("/sse", sse),
]

app = Starlette(routes=[Mount(BRIDGE_PREFIX, routes=_routes)])
