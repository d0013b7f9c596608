"""What an httpx-style client library sees: the transport and the response body.

Written once, against the API that httpx and httpx2 share. Each flavour module combines these
mixins with its own library's base classes (httpx2's client checks `isinstance` against its
own `AsyncByteStream`, and anthropic refuses any httpx class in a transport's MRO), and hands
in a `FlavorClasses` naming its classes. The mixins themselves import neither library.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable
from functools import partial
from types import ModuleType
from typing import Any, ClassVar

from ._exchange import (
    AbandonGuard,
    AppRunner,
    CoreProtocolError,
    CoreReadTimeout,
    CoreStreamClosed,
    Exchange,
)
from ._flavors import wrong_flavor_error
from ._refusals import refused
from ._rules import check_asgi_app, path_without_query
from ._scope import ScopeBuilder
from .types import ASGIApp, Scope

__all__ = [
    "DEFAULT_MAX_BUFFERED_CHUNKS",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "FlavorClasses",
    "ResponseBody",
    "RoutedRequest",
    "TransportCore",
]

# Bounds how many chunks the app runs ahead of a slow consumer (behaviour §5).
DEFAULT_MAX_BUFFERED_CHUNKS = 8

# How long the owner's close (a bare transport's, a factory's) waits for apps that run on
# after their response, background tasks, before cancelling them (behaviour §6). uvicorn
# waits without bound by default; a bound keeps a stuck task from hanging a test suite or a
# worker's exit, and is far above what post-response work (a usage record, an audit log)
# takes.
DEFAULT_SHUTDOWN_TIMEOUT = 10.0

# What `_route` returns: the scope, and the context the app runs in.
RoutedRequest = tuple[Scope, contextvars.Context]


class FlavorClasses:
    """The classes of one client library (httpx or httpx2) that responses and errors use."""

    def __init__(self, module: ModuleType, body_class: type[ResponseBody]) -> None:
        self.name: str = module.__name__
        self.request_class: type = module.Request
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

    def check_request(self, request: object, label: str) -> None:
        """Refuse a request of the other client library, saying which flavour to use, and
        log the refusal (an SDK may hide it, behaviour §7) for the transport `label` names.

        Only called when the request's type is not exactly this flavour's: the check costs
        the hot path one identity test.
        """
        if not isinstance(request, self.request_class):
            raise refused(wrong_flavor_error(self.name, request), label)


_CORE_ERRORS = (CoreReadTimeout, CoreProtocolError, CoreStreamClosed)


class ResponseBody:
    """The response body as an `AsyncByteStream`: chunks as the app sends them."""

    flavor: ClassVar[FlavorClasses]

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
        # collectable on its own (behaviour §6: a dropped response is released).
        exchange.translate = partial(self.flavor.translate, request=request)

    # Not an async generator: iterating again after a `break` resumes where it stopped
    # (behaviour §5) and leaves nothing suspended to clean up.
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

    flavor: ClassVar[FlavorClasses]

    def __init__(
        self,
        app: ASGIApp,
        *,
        raise_app_exceptions: bool = True,
        root_path: str = "",
        client: tuple[str, int] = ("127.0.0.1", 123),
        disconnect_grace: float = 1.0,
        max_buffered_chunks: int = DEFAULT_MAX_BUFFERED_CHUNKS,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    ) -> None:
        check_asgi_app(app)
        self._engine = AppRunner(
            app,
            raise_app_exceptions=raise_app_exceptions,
            disconnect_grace=disconnect_grace,
            max_buffered_chunks=max_buffered_chunks,
            shutdown_timeout=shutdown_timeout,
        )
        self._scope = ScopeBuilder(root_path=root_path, client=client)

    @property
    def app(self) -> ASGIApp:
        return self._engine.app

    @property
    def raise_app_exceptions(self) -> bool:
        return self._engine.raise_app_exceptions

    @property
    def root_path(self) -> str:
        return self._scope.root_path

    @property
    def client(self) -> tuple[str, int]:
        return self._scope.client

    def _route(self, request: Any) -> RoutedRequest:
        url = request.url
        scope = self._scope.build(request, url.path, path_without_query(url.raw_path), {})
        return scope, contextvars.copy_context()

    async def handle_async_request(self, request: Any) -> Any:
        flavor = self.flavor
        if type(request) is not flavor.request_class:
            flavor.check_request(request, self._engine.log_label)  # behaviour §2
        scope, context = self._route(request)
        engine = self._engine
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
        """Cancel and await every app whose response is not complete; a bare transport also
        waits for the others, up to its `shutdown_timeout` (behaviour §6)."""
        await self._engine.aclose()
