"""What every framework app of the matrix shares: gates, the recorder, the raw sub-app."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio

from aibridge_transport import AIBRIDGE_ROOT_PATH
from aibridge_transport.types import Receive, Scope, Send

__all__ = [
    "BASE",
    "COOKIES",
    "ENDINGS",
    "JSON_BODY",
    "LATIN",
    "SSE_EVENT",
    "STARTED",
    "STREAM_CHUNK",
    "VIEWS",
    "Recorder",
    "after_response",
    "gate",
    "gated_chunks",
    "gated_tokens",
    "probe_of",
    "serial",
    "status_body",
    "wait_for",
    "where",
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


def probe_of(headers: Any) -> str:
    """The `x-probe` header, which names the request for the test."""
    return str(headers.get("x-probe", ""))


# Names for apps that need one per instance (Quart, Sanic blueprints, Sanic apps).
serial = itertools.count()
