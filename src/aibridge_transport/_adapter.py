"""What an httpx-style client library sees: the transport and the response body.

Written once, against the API that httpx and httpx2 share. Each flavour module combines these
mixins with its own library's base classes (httpx2's client checks `isinstance` against its
own `AsyncByteStream`, and anthropic refuses any httpx class in a transport's MRO), and hands
in a `Flavor` naming its exception classes. The mixins themselves import neither library.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable
from functools import partial
from types import ModuleType
from typing import Any, ClassVar

from ._errors import InvalidRequestHeaderError
from ._exchange import (
    AbandonGuard,
    CoreProtocolError,
    CoreReadTimeout,
    CoreStreamClosed,
    Engine,
    Exchange,
)
from .types import ASGIApp

__all__ = [
    "DEFAULT_MAX_BUFFERED_CHUNKS",
    "MAX_REQUEST_HEADER_BYTES",
    "Flavor",
    "ResponseBody",
    "Route",
    "TransportCore",
    "scope_headers",
]

# Bounds how many chunks the app runs ahead of a slow consumer (contract 5).
DEFAULT_MAX_BUFFERED_CHUNKS = 8

# A server refuses these before any app runs; without a socket in between, the transport must
# (h11's rules: a name is a token, a value holds no CR, LF or NUL). The size bound is above
# the request heads that uvicorn (h11, 16 KiB) and nginx (4 x 8 KiB) accept, so whatever a
# server takes passes here too.
MAX_REQUEST_HEADER_BYTES = 64 * 1024
_TOKEN_BYTES = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

_TOKEN_CHARS = bytes(sorted(_TOKEN_BYTES))


def scope_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request headers as the scope carries them, or `InvalidRequestHeaderError`."""
    # Fast path: the same checks over all names and all values at once, in C. Only when one
    # fails does the loop below run, to name the first offending header.
    names = [name for name, _ in raw]
    all_names = b"".join(names)
    all_values = b"".join([value for _, value in raw])
    if (
        b"" not in names
        and not all_names.translate(None, _TOKEN_CHARS)
        and b"\r" not in all_values
        and b"\n" not in all_values
        and b"\x00" not in all_values
        and len(all_names) + len(all_values) <= MAX_REQUEST_HEADER_BYTES
    ):
        return [(name.lower(), value) for name, value in raw]
    headers: list[tuple[bytes, bytes]] = []
    total = 0
    for name, value in raw:
        # Deleting every token byte in C leaves nothing of a valid name (~10x a set test).
        if not name or name.translate(None, _TOKEN_CHARS):
            raise InvalidRequestHeaderError(
                f"request header name {name!r} is not a valid HTTP token"
            )
        if b"\r" in value or b"\n" in value or b"\x00" in value:
            raise InvalidRequestHeaderError(
                f"request header {name!r} has CR, LF or NUL in its value"
            )
        total += len(name) + len(value)
        if total > MAX_REQUEST_HEADER_BYTES:
            raise InvalidRequestHeaderError(
                f"request headers exceed {MAX_REQUEST_HEADER_BYTES} bytes (names and values)"
            )
        headers.append((name.lower(), value))
    return headers


# What `_route` returns: path, raw_path, scope extensions, and the context the app runs in.
Route = tuple[str, bytes, dict[str, Any], contextvars.Context]


class Flavor:
    """The classes of one client library (httpx or httpx2) that responses and errors use."""

    def __init__(self, module: ModuleType, body_class: type[ResponseBody]) -> None:
        self.name: str = module.__name__
        self.response_class: Any = module.Response
        self.read_timeout: Any = module.ReadTimeout
        self.remote_protocol_error: Any = module.RemoteProtocolError
        self.stream_closed: Any = module.StreamClosed
        self.request_not_read: Any = module.RequestNotRead
        self.body_class = body_class

    def translate(self, exc: Exception, request: Any) -> BaseException:
        """The client-flavoured exception for a core error."""
        if isinstance(exc, CoreReadTimeout):
            return self.read_timeout(str(exc), request=request)  # type: ignore[no-any-return]
        if isinstance(exc, CoreProtocolError):
            error: BaseException = self.remote_protocol_error(str(exc), request=request)
            error.__cause__ = exc.__cause__
            return error
        return self.stream_closed()  # type: ignore[no-any-return]


_CORE_ERRORS = (CoreReadTimeout, CoreProtocolError, CoreStreamClosed)


class ResponseBody:
    """The response body as an `AsyncByteStream`: chunks as the app sends them."""

    flavor: ClassVar[Flavor]

    __slots__ = ("_chunks", "_exchange", "_guard")

    def __init__(self, exchange: Exchange, request: Any) -> None:
        self._guard: AbandonGuard | None = None
        chunks = exchange.complete_body()
        if chunks is not None:
            # Complete before the transport returned (the app's eager first step, on
            # asyncio): its chunks are all there is, and nothing is left to release.
            self._exchange: Exchange | None = None
            self._chunks: list[bytes] | None = chunks
            return
        self._exchange = exchange
        self._chunks = None
        if exchange.holds_resources:
            self._guard = AbandonGuard(exchange)
        # Not a bound method of this body: the exchange outlives it, and the body must stay
        # collectable on its own (contract 6: a dropped response is released).
        exchange.translate = partial(self.flavor.translate, request=request)

    # Not an async generator: iterating again after a `break` resumes where it stopped
    # (contract 5) and leaves nothing suspended to clean up.
    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        exchange = self._exchange
        if exchange is None:
            return self._next_complete()
        # The exchange's own coroutine, translating errors itself: one coroutine per chunk.
        return exchange.next_chunk()

    async def _next_complete(self) -> bytes:
        chunks = self._chunks
        if chunks is None:
            raise self.flavor.stream_closed()
        if chunks:
            return chunks.pop(0)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        exchange = self._exchange
        self._chunks = None
        if exchange is None:
            return
        try:
            await exchange.aclose()
        finally:
            # httpx responses are reference cycles, freed by the collector: once closed, the
            # body lets go of the exchange (freed at once) and of its guard's finalizer.
            self._exchange = self._guard = None


class TransportCore:
    """A streaming replacement for `ASGITransport`, written once for both flavours."""

    flavor: ClassVar[Flavor]

    def __init__(
        self,
        app: ASGIApp,
        *,
        raise_app_exceptions: bool = True,
        root_path: str = "",
        client: tuple[str, int] = ("127.0.0.1", 123),
        disconnect_grace: float = 1.0,
        max_buffered_chunks: int = DEFAULT_MAX_BUFFERED_CHUNKS,
    ) -> None:
        self._engine = Engine(
            app,
            raise_app_exceptions=raise_app_exceptions,
            root_path=root_path,
            client=client,
            disconnect_grace=disconnect_grace,
            max_buffered_chunks=max_buffered_chunks,
        )

    @property
    def app(self) -> ASGIApp:
        return self._engine.app

    @property
    def raise_app_exceptions(self) -> bool:
        return self._engine.raise_app_exceptions

    @property
    def root_path(self) -> str:
        return self._engine.root_path

    @property
    def client(self) -> tuple[str, int]:
        return self._engine.client

    def _route(self, request: Any) -> Route:
        url = request.url
        raw_path: bytes = url.raw_path.split(b"?", 1)[0]
        return url.path, raw_path, {}, contextvars.copy_context()

    async def handle_async_request(self, request: Any) -> Any:
        path, raw_path, extensions, context = self._route(request)
        flavor = self.flavor
        url = request.url
        engine = self._engine
        scope = engine.scope(
            method=request.method,
            scheme=url.scheme,
            host=url.host,
            port=url.port,
            path=path,
            raw_path=raw_path,
            query=url.query,
            headers=scope_headers(request.headers.raw),
            extensions=extensions,
        )
        try:
            body = request.content  # already in memory: handed over as one message, no copy
        except flavor.request_not_read:
            body = request.stream
        timeout = request.extensions.get("timeout")
        read_timeout = timeout.get("read") if timeout else None
        try:
            exchange = engine.start(scope, body, read_timeout=read_timeout, context=context)
            if not exchange.started:
                await exchange.ready()
        except _CORE_ERRORS as exc:
            raise flavor.translate(exc, request) from exc.__cause__
        return flavor.response_class(
            exchange.status,
            headers=exchange.headers,
            stream=flavor.body_class(exchange, request),
        )

    async def aclose(self) -> None:
        """Cancel and await every app task this transport still runs."""
        await self._engine.aclose()
