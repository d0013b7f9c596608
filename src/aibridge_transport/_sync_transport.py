"""The sync side of every transport: `handle_request` and `close` (behaviour §12).

`SyncTransportMixin` goes before the flavour's `AsyncBaseTransport` in the bases of the
in-process transports, next to the flavour's `BaseTransport`, as httpx's `MockTransport` is
both. The request is routed in the calling thread (its context, its identity), then runs on
the loop that `LoopHost` gives (see `_loop_host` and `_sync`).
"""

from __future__ import annotations

import copy
import threading
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

from ._exchange import AppRunner
from ._loop_host import LoopHost, SyncClosing, after_fork_in_child
from ._sync import SyncExchange, forget_loop_markers, split_buffer, sync_body_class

if TYPE_CHECKING:
    from ._transport import FlavorClasses, RoutedRequest

__all__ = ["SyncTransportMixin"]

# Guards the lazy creation of a transport's sync engine and loop host: two threads may make
# their first sync request at once.
_LAZY = threading.Lock()


def _renew_lock() -> None:
    global _LAZY
    _LAZY = threading.Lock()  # another thread of the parent may have held it (behaviour §12)


after_fork_in_child(_renew_lock)


class SyncTransportMixin(SyncClosing):
    """Makes a streaming in-process transport a sync transport of its flavour too."""

    flavor: ClassVar[FlavorClasses]
    _engine: AppRunner

    # A factory's transports share the factory's host; a bare transport makes its own.
    loop_host: LoopHost | None = None
    _owns_loop_host = False
    _sync_engine: AppRunner | None = None

    if TYPE_CHECKING:

        def _route(self, request: Any) -> RoutedRequest: ...

    def _host(self) -> LoopHost:
        host = self.loop_host
        if host is None:
            with _LAZY:
                host = self.loop_host
                if host is None:
                    host = self.loop_host = LoopHost()
                    self._owns_loop_host = True
        return host

    def _engine_for_sync(self, host: LoopHost) -> AppRunner:
        engine = self._sync_engine
        if engine is None:
            with _LAZY:
                engine = self._sync_engine
                if engine is None:
                    # The same app and options; only the buffer differs, as the thread-side
                    # deque takes its share of `max_buffered_chunks` (see `_sync`).
                    engine = copy.copy(self._engine)
                    engine.live = set()
                    engine.max_buffered_chunks = split_buffer(self._engine.max_buffered_chunks)[0]
                    host.engines.add(engine)
                    self._sync_engine = engine
        return engine

    def handle_request(self, request: Any) -> Any:
        flavor = self.flavor
        if type(request) is not flavor.request_class:
            flavor.check_request(request, self._engine.log_label)  # behaviour §2
        scope, context = self._route(request)
        forget_loop_markers(context)
        host = self._host()
        loop = host.loop()  # before anything runs: the same-loop guard (behaviour §12)
        engine = self._engine_for_sync(host)
        try:
            body: Any = request.content  # already in memory: one message, no copy
        except flavor.request_not_read:
            body = request.stream
        timeout = request.extensions.get("timeout")
        sync = SyncExchange(
            engine,
            scope,
            body,
            read_timeout=timeout.get("read") if timeout else None,
            context=context,
            loop=loop,
            host=host,
            capacity=split_buffer(self._engine.max_buffered_chunks)[1],
            translate=partial(flavor.translate, request=request),
        )
        sync.begin()
        return flavor.response_class(
            sync.status, headers=sync.headers, stream=sync_body_class(flavor)(sync)
        )

    def close(self) -> None:
        """Cancel this transport's sync requests; a bare transport also stops its loop.

        A factory's transport only starts the cancelling: the factory's loop runs on.
        """
        host = self.loop_host
        if host is None:
            return
        if self._owns_loop_host:
            host.close()
            return
        engine = self._sync_engine
        if engine is not None and engine.live:
            host.cancel_soon(engine.aclose)

    async def __aenter__(self) -> Self:
        host = self._host()
        if self._owns_loop_host:
            host.attach()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        try:
            await self.aclose()
        finally:
            if self._owns_loop_host and self.loop_host is not None:
                self.loop_host.detach()

    async def aclose(self) -> None:
        """Cancel and await every app task this transport still runs on the current loop."""
        await super().aclose()  # type: ignore[misc]
        await self.aclose_sync_requests()

    async def aclose_sync_requests(self) -> None:
        """Cancel this transport's sync requests when they run on the current loop."""
        engine = self._sync_engine
        host = self.loop_host
        if engine is not None and host is not None and host.serves_this_thread():
            await engine.aclose()


def enter_in_process(factory: Any) -> None:
    """`with factory:`: start the factory's loop thread and run the lifespan on it."""
    host: LoopHost = factory._loop_host
    host.start()
    try:
        host.run(factory.__aenter__)
    except BaseException:
        host.close()
        raise


def close_in_process(factory: Any) -> None:
    """`factory.close()`: its `aclose()` on the loop of sync requests, then stop its thread."""
    host: LoopHost = factory._loop_host
    if not host.owns_thread:
        return
    try:
        host.run(factory.aclose)
    finally:
        host.close()
