"""The ASGI side of the tests: message builders, body readers, and the small apps they share.

Apps a single test module needs stay in that module; the ones here are used by several.
"""

from __future__ import annotations

import threading

import anyio
import anyio.to_thread

from aibridge_transport.types import Message, Receive, Scope, Send

__all__ = [
    "ThreadGates",
    "chunk",
    "echo_body",
    "hello_world",
    "plain_headers",
    "raise_exc",
    "raise_exc_after_response",
    "read_body",
    "start",
    "wait_for_disconnect",
]


# -- messages ----------------------------------------------------------------------------------


def start(headers: list[tuple[bytes, bytes]] | None = None, status: int = 200) -> Message:
    return {"type": "http.response.start", "status": status, "headers": headers or []}


def chunk(body: bytes, more_body: bool = True) -> Message:
    return {"type": "http.response.body", "body": body, "more_body": more_body}


async def read_body(receive: Receive) -> bytes:
    """The whole request body, message by message."""
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body", False):
            return body


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


# -- httpx's own test apps (its `tests/test_asgi.py`) -------------------------------------------


def plain_headers(output: bytes) -> list[tuple[bytes, str]]:
    # A str header value, as httpx's tests send (and its transport tolerates).
    return [(b"content-type", "text/plain"), (b"content-length", str(len(output)))]


async def hello_world(scope: Scope, receive: Receive, send: Send) -> None:
    output = b"Hello, World!"
    await send({"type": "http.response.start", "status": 200, "headers": plain_headers(output)})
    await send({"type": "http.response.body", "body": output})


async def echo_body(scope: Scope, receive: Receive, send: Send) -> None:
    """Sends each request body message back as it arrives."""
    await send(start())
    more_body = True
    while more_body:
        message = await receive()
        more_body = message.get("more_body", False)
        await send(chunk(message.get("body", b""), more_body=more_body))


async def raise_exc(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError()


async def raise_exc_after_response(scope: Scope, receive: Receive, send: Send) -> None:
    await hello_world(scope, receive, send)
    raise RuntimeError()


# -- apps on another thread's loop (uvicorn's) ---------------------------------------------------


class ThreadGates:
    """Named one-shot events between a test and an app served by uvicorn on another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Event] = {}

    def __call__(self, name: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(name, threading.Event())

    async def wait_for(self, name: str) -> None:
        # A thread wait, because the app may run on uvicorn's loop in another thread; bounded,
        # so a broken test fails instead of hanging.
        happened = await anyio.to_thread.run_sync(self(name).wait, 10)
        assert happened, f"{name} never happened"
