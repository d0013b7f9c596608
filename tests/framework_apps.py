"""One app of the same shape in each of eight ASGI frameworks, for the framework matrix.

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

import contextlib
import itertools
import json
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import blacksheep
import blacksheep.server.responses
import blacksheep.server.sse
import django
import django.conf
import django.core.asgi
import django.http
import django.urls
import falcon
import falcon.asgi
import fastapi
import fastapi.responses
import litestar
import litestar.background_tasks
import litestar.datastructures
import litestar.handlers
import litestar.params
import litestar.response
import quart
import sanic
import sanic.response
import starlette.applications
import starlette.background
import starlette.requests
import starlette.responses
import starlette.routing
from django.http import HttpRequest, HttpResponse
from falcon.asgi import Request as FalconRequest
from falcon.asgi import Response as FalconResponse
from sanic.response import HTTPResponse
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse

from aibridge_transport import AIBRIDGE_ROOT_PATH
from aibridge_transport.types import ASGIApp, Receive, Scope, Send

# Annotations the frameworks resolve at run time (FastAPI, Litestar, BlackSheep) must name
# module-level objects.
LitestarRequest = litestar.Request[Any, Any, Any]

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

BASE = f"{AIBRIDGE_ROOT_PATH}/openai"
# Long enough for a loaded machine, short enough that a transport that buffers fails fast.
GATE_TIMEOUT = 5.0

# What each request's framework received, by `x-probe`; written from uvicorn's thread too.
VIEWS: dict[str, dict[str, Any]] = {}
# How each request's framework call ended, by `x-probe`.
ENDINGS: dict[str, str] = {}
_GATES: dict[str, threading.Event] = {}
_GATES_LOCK = threading.Lock()


def gate(name: str) -> threading.Event:
    """A flag shared by the test and the app, whichever thread and loop each runs on."""
    with _GATES_LOCK:
        return _GATES.setdefault(name, threading.Event())


async def wait_for(name: str) -> None:
    # A thread wait: under uvicorn the app runs on another thread's loop than the test.
    # Abandoned on cancellation, so that cancelling the app is not held up by the thread.
    flag = gate(name)
    if not await anyio.to_thread.run_sync(flag.wait, GATE_TIMEOUT, abandon_on_cancel=True):
        raise AssertionError(f"{name} never happened: was the previous chunk delivered?")


async def gated_chunks(probe: str, template: str) -> AsyncIterator[bytes]:
    """Three chunks; each after the first only once the client has read the one before."""
    for number in range(3):
        if number:
            await wait_for(f"{probe}/read-{number - 1}")
        yield template.format(number).encode()


async def gated_tokens(probe: str) -> AsyncIterator[str]:
    for number in range(3):
        if number:
            await wait_for(f"{probe}/read-{number - 1}")
        yield f"token-{number}"


STREAM_CHUNK = "chunk-{}\n"
SSE_EVENT = "data: token-{}\n\n"
JSON_BODY = {"hello": "wörld", "numbers": [1, 2, 3]}
STARTED = "lifespan-ran"
COOKIES = (("a", "1"), ("b", "2"), ("c", "3"))
LATIN = "café"


async def after_response(probe: str) -> None:
    """A background task: the work an app does after its response, until the client left."""
    await wait_for(f"{probe}/client-closed")


def status_body(code: int) -> bytes:
    return b"" if code in (204, 304) else f"status {code}".encode()


def _view(scope: Scope) -> dict[str, Any]:
    return {
        "type": scope["type"],
        "asgi": dict(scope["asgi"]),
        "http_version": scope["http_version"],
        "method": scope["method"],
        "scheme": scope["scheme"],
        "path": scope["path"],
        "raw_path": scope["raw_path"],
        "root_path": scope.get("root_path", ""),
        "query_string": scope["query_string"],
        # `x-probe` names the request for the test; each request has its own.
        "headers": [pair for pair in scope["headers"] if pair[0] != b"x-probe"],
        "server": tuple(scope["server"]) if scope.get("server") else None,
        "client": tuple(scope["client"]) if scope.get("client") else None,
        "state": dict(scope["state"]) if "state" in scope else None,
        "extensions": scope.get("extensions"),
    }


class Recorder:
    """Keeps the scope each request reached the framework with (a copy, taken on entry)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        probe = dict(scope["headers"]).get(b"x-probe") if scope["type"] == "http" else None
        if probe is None:
            await self.app(scope, receive, send)
            return
        name = probe.decode()
        VIEWS[name] = _view(scope)
        # How the framework's call ended (returned, or what it raised): compared with uvicorn,
        # which lets every call run to its end.
        ended = "returned"
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            ended = f"raised {type(exc).__name__}"
            raise
        finally:
            ENDINGS[name] = ended
            gate(f"{name}/ended").set()


async def where(scope: Scope, receive: Receive, send: Send) -> None:
    """The raw ASGI sub-app that frameworks mount: reports the paths it was given."""
    body = json.dumps(
        {
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "root_path": scope["root_path"],
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _probe(headers: Any) -> str:
    return str(headers.get("x-probe", ""))


# -- Starlette and FastAPI ------------------------------------------------------------------


def starlette_app() -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: starlette.applications.Starlette) -> AsyncIterator[dict[str, str]]:
        yield {"started": STARTED}

    async def json_(request: StarletteRequest) -> StarletteResponse:
        return starlette.responses.JSONResponse(JSON_BODY)

    async def echo(request: StarletteRequest) -> StarletteResponse:
        return StarletteResponse(await request.body(), media_type="application/octet-stream")

    async def stream(request: StarletteRequest) -> StarletteResponse:
        chunks = gated_chunks(_probe(request.headers), STREAM_CHUNK)
        return starlette.responses.StreamingResponse(chunks)

    async def sse(request: StarletteRequest) -> StarletteResponse:
        chunks = gated_chunks(_probe(request.headers), SSE_EVENT)
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
        task = starlette.background.BackgroundTask(after_response, _probe(request.headers))
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
        chunks = gated_chunks(_probe(request.headers), STREAM_CHUNK)
        return fastapi.responses.StreamingResponse(chunks)

    @app.get(f"{BASE}/sse")
    async def sse(request: fastapi.Request) -> fastapi.responses.StreamingResponse:
        chunks = gated_chunks(_probe(request.headers), SSE_EVENT)
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
        tasks.add_task(after_response, _probe(request.headers))
        return "sent"

    app.mount(f"{BASE}/sub", where)
    return app


# -- Litestar -------------------------------------------------------------------------------


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
        return litestar.response.Stream(gated_chunks(_probe(request.headers), STREAM_CHUNK))

    @litestar.get(f"{BASE}/sse")
    async def sse(request: LitestarRequest) -> litestar.response.ServerSentEvent:
        return litestar.response.ServerSentEvent(gated_tokens(_probe(request.headers)))

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
        task = litestar.background_tasks.BackgroundTask(after_response, _probe(request.headers))
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


# -- Quart ----------------------------------------------------------------------------------


def quart_app() -> Any:
    request = quart.request
    app = quart.Quart(f"matrix_quart_{next(_serial)}")

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
        return quart.Response(gated_chunks(_probe(request.headers), STREAM_CHUNK))

    @app.get(f"{BASE}/sse")
    async def sse() -> quart.Response:
        chunks = gated_chunks(_probe(request.headers), SSE_EVENT)
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


_serial = itertools.count()


# -- Django ---------------------------------------------------------------------------------


async def _django_json(request: HttpRequest) -> HttpResponse:
    return django.http.JsonResponse(JSON_BODY)


async def _django_echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type="application/octet-stream")


async def _django_stream(request: HttpRequest) -> HttpResponse:
    chunks = gated_chunks(_probe(request.headers), STREAM_CHUNK)
    return django.http.StreamingHttpResponse(chunks)


async def _django_sse(request: HttpRequest) -> HttpResponse:
    chunks = gated_chunks(_probe(request.headers), SSE_EVENT)
    return django.http.StreamingHttpResponse(chunks, content_type="text/event-stream")


async def _django_status(request: HttpRequest, code: int) -> HttpResponse:
    return HttpResponse(status_body(code), status=code)


async def _django_raise(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the handler failed")


async def _django_cookies(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(b"cookies")
    for name, value in COOKIES:
        response.set_cookie(name, value)
    return response


async def _django_latin1(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(request.headers.get("x-latin", "").encode())
    response["x-latin"] = LATIN
    return response


async def _django_inspect(request: HttpRequest, tail: str) -> HttpResponse:
    query = [(key, value) for key, values in request.GET.lists() for value in values]
    return django.http.JsonResponse({"path": request.path, "tail": tail, "query": query})


async def _django_state(request: HttpRequest) -> HttpResponse:
    # Django speaks no lifespan: nothing ever starts.
    return django.http.JsonResponse({"started": None})


async def _django_sub_where(request: HttpRequest) -> HttpResponse:
    return django.http.JsonResponse(
        {
            "path": request.path,
            "path_info": request.path_info,
            "script_name": request.META.get("SCRIPT_NAME"),
        }
    )


class _URLConf:
    """Django's root URLconf, as an object rather than a module."""

    def __init__(self) -> None:
        path = django.urls.path
        prefix = BASE.lstrip("/")
        self.urlpatterns = [
            path(f"{prefix}/json", _django_json),
            path(f"{prefix}/echo", _django_echo),
            path(f"{prefix}/stream", _django_stream),
            path(f"{prefix}/sse", _django_sse),
            path(f"{prefix}/status/<int:code>", _django_status),
            path(f"{prefix}/raise", _django_raise),
            path(f"{prefix}/cookies", _django_cookies),
            path(f"{prefix}/latin1", _django_latin1),
            path(f"{prefix}/inspect/<path:tail>", _django_inspect),
            path(f"{prefix}/state", _django_state),
            # Django mounts no ASGI apps; an included URLconf is its sub-application.
            path(f"{prefix}/sub/", django.urls.include([path("where", _django_sub_where)])),
        ]


_django_lock = threading.Lock()


def django_app() -> Any:
    # Settings are process-wide in Django: configured once, by the first app built.
    with _django_lock:
        if not django.conf.settings.configured:
            django.conf.settings.configure(
                DEBUG=False,
                SECRET_KEY="framework-matrix",
                ALLOWED_HOSTS=["*"],
                ROOT_URLCONF=_URLConf(),
                MIDDLEWARE=[],
                INSTALLED_APPS=[],
                USE_TZ=True,
                # Django's logging setup would reconfigure the process's loggers.
                LOGGING_CONFIG=None,
            )
            django.setup(set_prefix=False)
    return django.core.asgi.get_asgi_application()


# -- Falcon ---------------------------------------------------------------------------------


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


# -- BlackSheep -----------------------------------------------------------------------------


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


# -- Sanic ----------------------------------------------------------------------------------


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
    app = sanic.Sanic(f"matrix_sanic_{next(_serial)}", configure_logging=False)

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
    sub = sanic.Blueprint(f"sub_{next(_serial)}", url_prefix=f"{BASE}/sub")

    @sub.get("/where")
    async def sub_where(request: sanic.Request) -> HTTPResponse:
        return response.json({"path": request.path})

    app.blueprint(sub)
    return app


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
