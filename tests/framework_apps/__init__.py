"""One app of the same shape in each of eight ASGI frameworks, for the framework matrix.

One module per framework (Starlette and FastAPI share one); `common` holds what they share.

Every app routes under `BASE` (where the in-process factory places a request for the
`openai` provider), so the same request reaches the same route through a bare transport, the
factory and a real uvicorn. The routes, in each framework's own idiom:

| route | answers |
|---|---|
| `GET  BASE/json` | a JSON object |
| `POST BASE/echo` | the request body, as `application/octet-stream` |
| `GET  BASE/stream` | three chunks, each after the client read the one before (`x-probe` gates) |
| `GET  BASE/sse` | three server-sent events, gated the same way |
| `GET  BASE/status/<code>` | that status, with a short body unless 204 or 304 |
| `GET  BASE/raise` | raises: the framework's own 500 |
| `GET  BASE/cookies` | three `Set-Cookie` headers |
| `GET  BASE/latin1` | an `x-latin: café` header; the body is the request's `x-latin` as decoded |
| `GET  BASE/inspect/<tail>` | JSON: the path, tail and query pairs as the framework parsed them |
| `GET  BASE/sub/where` | a sub-app (an ASGI mount where the framework has one) reports its path |
| `GET  BASE/state` | JSON: what the app's lifespan startup left for its handlers |
| `GET  BASE/background` | a response, then a background task that ends once the client closed |

The last route exists where the framework runs background tasks inside the request's ASGI
call (Starlette, FastAPI, Litestar).

`Recorder`, a raw ASGI middleware around each framework app, keeps the scope as the
framework received it (by the request's `x-probe` header), so what the app saw is compared
the same way for every framework.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aibridge_transport.types import ASGIApp

from .blacksheep_app import blacksheep_app
from .common import BASE, ENDINGS, STARTED, VIEWS, Recorder, gate, wait_for
from .django_app import django_app
from .falcon_app import falcon_app
from .litestar_app import litestar_app
from .quart_app import quart_app
from .sanic_app import sanic_app
from .starlette_fastapi import fastapi_app, starlette_app

__all__ = [
    "BASE",
    "ENDINGS",
    "FRAMEWORKS",
    "STARTED",
    "VIEWS",
    "Framework",
    "gate",
    "wait_for",
]


@dataclass(frozen=True)
class Framework:
    """A framework in the matrix: how to build its app, and whether it runs on trio."""

    name: str
    # Any: each framework types its ASGI callable in its own way.
    build: Callable[[], Any]
    # None when the framework runs on trio; otherwise why it does not.
    not_on_trio: str | None

    def app(self) -> ASGIApp:
        return Recorder(self.build())


FRAMEWORKS = {
    framework.name: framework
    for framework in (
        Framework("starlette", starlette_app, None),
        Framework("fastapi", fastapi_app, None),
        Framework("litestar", litestar_app, None),
        Framework("quart", quart_app, "Quart runs on asyncio only"),
        Framework("django", django_app, "Django's ASGI handler runs on asyncio only (asgiref)"),
        Framework("falcon", falcon_app, "Falcon's ASGI app runs on asyncio only"),
        Framework("blacksheep", blacksheep_app, "BlackSheep runs on asyncio only"),
        Framework("sanic", sanic_app, "Sanic runs on asyncio only"),
    )
}
