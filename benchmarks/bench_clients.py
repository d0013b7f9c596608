"""The clients compared: each sends a request to the benchmark app and hands back its body."""

from __future__ import annotations

import contextvars
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Protocol

import anyio
import anyio.lowlevel
import httpx
import uvicorn
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from bench_app import BRIDGE_PREFIX

from aibridge_transport import InProcessTransportFactory, Source, StreamingASGITransport
from aibridge_transport._backend import spawn_detached
from aibridge_transport._transport import DEFAULT_MAX_BUFFERED_CHUNKS
from aibridge_transport.types import ASGIApp, Message, Scope

__all__ = [
    "CLIENT_NAMES",
    "Client",
    "DirectClient",
    "DirectTaskClient",
    "HTTPXClient",
    "HTTPXTaskTransport",
    "OnChunk",
    "UvicornThread",
    "open_clients",
]

OnChunk = Callable[[bytes], Awaitable[None]]

DIRECT = "direct"
DIRECT_TASK = "direct+task"
HTTPX_TASK = "httpx+task"
ASGI_TRANSPORT = "httpx.ASGITransport"
UVICORN = "uvicorn"
STREAMING = "StreamingASGITransport"
FACTORY = "factory"
CLIENT_NAMES = (DIRECT, DIRECT_TASK, HTTPX_TASK, ASGI_TRANSPORT, UVICORN, STREAMING, FACTORY)


class Client(Protocol):
    name: str

    async def request(self, method: str, path: str, body: bytes) -> bytes: ...

    async def stream(self, path: str, on_chunk: OnChunk) -> None: ...


class _Call:
    """`receive`/`send` for one direct call: the body in one message, chunks to `on_chunk`,
    the start message to `on_start` if given."""

    __slots__ = ("body", "complete", "on_chunk", "on_start", "sent", "waiter")

    def __init__(
        self,
        body: bytes,
        on_chunk: OnChunk,
        on_start: Callable[[Message], Awaitable[None]] | None = None,
    ) -> None:
        self.body = body
        self.on_chunk = on_chunk
        self.on_start = on_start
        self.sent = False
        self.complete = False
        self.waiter: anyio.Event | None = None

    async def receive(self) -> Message:
        if not self.sent:
            self.sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        if not self.complete:
            # A streaming response listens for the disconnect until it has finished.
            self.waiter = anyio.Event()
            await self.waiter.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            if self.on_start is not None and message["type"] == "http.response.start":
                await self.on_start(message)
            return
        chunk = message.get("body", b"")
        if chunk:
            await self.on_chunk(chunk)
        if not message.get("more_body", False):
            self.complete = True
            if self.waiter is not None:
                self.waiter.set()


def _scope(method: str, path: str, query: str = "", *, prefixed: bool = False) -> Scope:
    if not prefixed:
        path, _, query = (BRIDGE_PREFIX + path).partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "server": ("bench", 80),
        "client": ("127.0.0.1", 123),
        "state": {},
        "extensions": {},
    }


class DirectClient:
    """The limit: the app awaited in the caller's task, with a prebuilt scope, no client library."""

    name = DIRECT

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._scopes: dict[tuple[str, str], Scope] = {}

    def _prebuilt(self, method: str, path: str) -> Scope:
        scope = self._scopes.get((method, path))
        if scope is None:
            scope = self._scopes[(method, path)] = _scope(method, path)
        return dict(scope)  # shallow: Starlette writes routing keys into the scope

    async def request(self, method: str, path: str, body: bytes) -> bytes:
        parts: list[bytes] = []

        async def collect(chunk: bytes) -> None:
            parts.append(chunk)

        call = _Call(body, collect)
        await self._app(self._prebuilt(method, path), call.receive, call.send)
        return b"".join(parts)

    async def stream(self, path: str, on_chunk: OnChunk) -> None:
        call = _Call(b"", on_chunk)
        await self._app(self._prebuilt("GET", path), call.receive, call.send)


_END = object()
_PENDING = object()


async def _wait(receive_stream: MemoryObjectReceiveStream[object]) -> object:
    """The next item when there was none at once: the reader's best strategy is one turn of
    the loop, a second look, and only then to block (as the library does); `_END` at the end."""
    await anyio.lowlevel.checkpoint()
    try:
        return receive_stream.receive_nowait()
    except anyio.WouldBlock:
        pass
    except anyio.EndOfStream:
        return _END
    try:
        return await receive_stream.receive()
    except anyio.EndOfStream:
        return _END


def _take(receive_stream: MemoryObjectReceiveStream[object]) -> object:
    try:
        return receive_stream.receive_nowait()
    except anyio.WouldBlock:
        return _PENDING
    except anyio.EndOfStream:
        return _END


class _Drained(httpx.AsyncByteStream):
    """The chunks of the stream, as a body httpx reads: one coroutine per chunk, a wait only
    when none is there (not an async generator, which costs a frame more per chunk)."""

    def __init__(self, receive_stream: MemoryObjectReceiveStream[object]) -> None:
        self._receive_stream = receive_stream

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        item = _take(self._receive_stream)
        if item is _PENDING:
            item = await _wait(self._receive_stream)
        if item is _END:
            raise StopAsyncIteration
        assert isinstance(item, bytes)
        return item

    async def aclose(self) -> None:
        self._receive_stream.close()


def _run_in_task(
    app: ASGIApp, scope: Scope, body: bytes, *, with_start: bool
) -> MemoryObjectReceiveStream[object]:
    """Start the app in its own native task (eagerly on asyncio, as the library does); its
    body chunks, and its start message if `with_start`, cross a bounded memory stream."""
    # Unsubscripted, as the library calls it: subscripting builds a generic alias per call.
    send_stream: MemoryObjectSendStream[object]
    receive_stream: MemoryObjectReceiveStream[object]
    send_stream, receive_stream = anyio.create_memory_object_stream(DEFAULT_MAX_BUFFERED_CHUNKS)

    async def put(item: object) -> None:
        try:
            send_stream.send_nowait(item)
        except anyio.WouldBlock:
            await send_stream.send(item)

    call = _Call(body, put, put if with_start else None)

    async def app_task() -> None:
        try:
            await app(scope, call.receive, call.send)
        finally:
            send_stream.close()

    spawn_detached(app_task, contextvars.copy_context())
    return receive_stream


class DirectTaskClient(DirectClient):
    """The floor of any streaming transport: the app in its own (native) task, its chunks
    crossing to the reader through a bounded anyio memory stream, `*_nowait` first.
    No client library, no scope building, no error handling."""

    name = DIRECT_TASK

    async def _run(self, method: str, path: str, body: bytes, on_chunk: OnChunk) -> None:
        scope = self._prebuilt(method, path)
        with _run_in_task(self._app, scope, body, with_start=False) as receive_stream:
            # Spelled out in place, not through `_take`/`_wait`: a floor spends no call on a
            # chunk (about 0.4 us of the SSE event's 5 us).
            while True:
                try:
                    chunk = receive_stream.receive_nowait()
                except anyio.WouldBlock:
                    await anyio.lowlevel.checkpoint()
                    try:
                        chunk = receive_stream.receive_nowait()
                    except anyio.WouldBlock:
                        try:
                            chunk = await receive_stream.receive()
                        except anyio.EndOfStream:
                            break
                    except anyio.EndOfStream:
                        break
                except anyio.EndOfStream:
                    break
                assert isinstance(chunk, bytes)
                await on_chunk(chunk)

    async def request(self, method: str, path: str, body: bytes) -> bytes:
        parts: list[bytes] = []

        async def collect(chunk: bytes) -> None:
            parts.append(chunk)

        await self._run(method, path, body, collect)
        return b"".join(parts)

    async def stream(self, path: str, on_chunk: OnChunk) -> None:
        await self._run("GET", path, b"", on_chunk)


class HTTPXTaskTransport(httpx.AsyncBaseTransport):
    """direct+task behind `httpx.AsyncClient`: the floor of any streaming transport that an
    httpx client talks to. The app in its own native task, started eagerly on asyncio; the
    response start and the chunks through a bounded memory stream, `*_nowait` first; a
    prebuilt scope, the body as one message. No checks, no read timeout, no disconnect, no
    error handling: what the library does on top of this is its own cost."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._scopes: dict[tuple[str, bytes], Scope] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = (request.method, request.url.raw_path)
        scope = self._scopes.get(key)
        if scope is None:
            path, _, query = request.url.raw_path.decode().partition("?")
            scope = self._scopes[key] = _scope(request.method, path, query, prefixed=True)
        receive_stream = _run_in_task(self._app, dict(scope), request.content, with_start=True)
        start = _take(receive_stream)
        if start is _PENDING:
            start = await _wait(receive_stream)
        if not isinstance(start, dict):
            raise httpx.RemoteProtocolError("the app sent no response", request=request)
        return httpx.Response(
            start["status"], headers=start["headers"], stream=_Drained(receive_stream)
        )


class HTTPXClient:
    """An `httpx.AsyncClient` over some transport, read the way SDKs read (`aiter_bytes`)."""

    def __init__(self, name: str, client: httpx.AsyncClient) -> None:
        self.name = name
        self.client = client

    async def request(self, method: str, path: str, body: bytes) -> bytes:
        response = await self.client.request(method, path, content=body or None)
        return response.content

    async def stream(self, path: str, on_chunk: OnChunk) -> None:
        async with self.client.stream("GET", path) as response:
            async for chunk in response.aiter_bytes():
                await on_chunk(chunk)


class UvicornThread:
    """uvicorn (h11) serving the app on 127.0.0.1 from a thread of this process."""

    def __init__(self, app: ASGIApp) -> None:
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
        # and without it every keep-alive response waits on a delayed ACK (about 40 ms).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        # A keep-alive longer than any run: uvicorn's default (5 s) closes a pooled connection
        # that sat idle while the other clients ran, and a request that picks it up as it
        # closes fails with "Server disconnected without sending a response".
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            timeout_keep_alive=3600,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def http_implementation(self) -> str:
        return str(self._server.config.http)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


async def open_clients(
    stack: AsyncExitStack, app: ASGIApp, uvicorn_port: int | None
) -> list[Client]:
    """Every client, in `CLIENT_NAMES` order, closed by `stack`."""
    factory = InProcessTransportFactory(app)
    bridge = factory.transport_for("openai", Source.AGENTS)

    def httpx_client(name: str, transport: httpx.AsyncBaseTransport, base: str) -> Client:
        client = httpx.AsyncClient(transport=transport, base_url=base)
        stack.push_async_callback(client.aclose)
        return HTTPXClient(name, client)

    clients: list[Client] = [
        DirectClient(app),
        DirectTaskClient(app),
        httpx_client(HTTPX_TASK, HTTPXTaskTransport(app), f"http://bench{BRIDGE_PREFIX}"),
        httpx_client(ASGI_TRANSPORT, httpx.ASGITransport(app), f"http://bench{BRIDGE_PREFIX}"),
    ]
    if uvicorn_port is not None:
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{uvicorn_port}{BRIDGE_PREFIX}")
        stack.push_async_callback(client.aclose)
        clients.append(HTTPXClient(UVICORN, client))
    clients.append(
        httpx_client(STREAMING, StreamingASGITransport(app), f"http://bench{BRIDGE_PREFIX}")
    )
    # As an SDK would: a base URL without the prefix, which the transport adds.
    clients.append(httpx_client(FACTORY, bridge, "http://bench"))
    stack.push_async_callback(factory.aclose)
    return clients
