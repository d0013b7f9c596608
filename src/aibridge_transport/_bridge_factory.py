"""The aibridge rules and the in-process factory (behaviour §§2, 3, 4 and 8)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, overload

import anyio

from ._bridge_identity import (
    Source,
    aibridge_extension,
    check_source,
    delegated_api_key_id_from_context,
    delegated_attribution_from_context,
)
from ._bridge_identity import identity_context as _identity_context
from ._bridge_paths import (
    AIBRIDGE_ROOT_PATH,
    check_root_path,
    place_request_path,
    validate_provider_name,
)
from ._errors import AIBridgeTransportError, BridgeNotRegisteredError, MissingDelegatedAPIKeyError
from ._exchange import AppRunner, shut_down
from ._flavors import Flavor, flavored_class, streaming_transport_class
from ._lifespan import NO_LIFESPAN_HINT, Lifespan, looked_up_missing_state
from ._loop_host import LoopHost, SyncClosing
from ._refusals import refused
from ._rules import check_asgi_app
from ._scope import ScopeBuilder
from ._sync_transport import close_in_process, enter_in_process
from ._transport import (
    DEFAULT_MAX_BUFFERED_CHUNKS,
    DEFAULT_SHUTDOWN_TIMEOUT,
    RoutedRequest,
    TransportCore,
)
from .types import ASGIApp, Scope

if TYPE_CHECKING:
    from ._transport_httpx import Transport as HTTPXTransport
    from .httpx2 import Transport as HTTPX2Transport

__all__ = ["AIBridgeTransport", "InProcessTransportFactory", "TransportFactory"]


class TransportFactory(Protocol):
    """
    Hands out a transport per provider and source; in-process or over HTTP.

    `transport_for` is overloaded on the literal flavour (behaviour §2): the default,
    `flavor="httpx"`, gives an `aibridge_transport.Transport` (for `httpx.AsyncClient` and
    `httpx.Client`), `flavor="httpx2"` an `aibridge_transport.httpx2.Transport` (for
    `httpx2.AsyncClient` and `httpx2.Client`), so a type checker refuses the one in the
    other's client. Both `InProcessTransportFactory` and `HTTPTransportFactory` implement it.
    """

    @overload
    def transport_for(
        self, provider_name: str, source: Source | str, *, flavor: Literal["httpx"] = ...
    ) -> HTTPXTransport: ...
    @overload
    def transport_for(
        self, provider_name: str, source: Source | str, *, flavor: Literal["httpx2"]
    ) -> HTTPX2Transport: ...
    @overload
    def transport_for(
        self, provider_name: str, source: Source | str, *, flavor: Flavor
    ) -> HTTPXTransport | HTTPX2Transport: ...


class AIBridgeTransport(TransportCore):
    """The aibridge rules on top of the generic transport: path, identity, extensions."""

    def __init__(
        self, engine: AppRunner, scope: ScopeBuilder, provider: str, source: str, root: str
    ) -> None:
        self._engine = engine
        self._scope = scope
        self._provider = provider
        self._source = source
        self._root = root

    def _route(self, request: Any) -> RoutedRequest:
        key_id = delegated_api_key_id_from_context()
        if key_id is None:
            raise refused(MissingDelegatedAPIKeyError(), self._engine.log_label)
        workspace_id = delegated_attribution_from_context()
        extensions = {
            "aibridge": aibridge_extension(self._provider, self._source, key_id, workspace_id)
        }
        try:  # a path or header the library refuses (behaviour §3), logged as the key is
            placed = place_request_path(self._provider, request.url.raw_path, self._root)
            scope = self._scope.build(request, placed.path, placed.raw_path, extensions)
        except AIBridgeTransportError as exc:
            refused(exc, self._engine.log_label)
            raise
        return scope, _identity_context(self._source, key_id, workspace_id)


class InProcessTransportFactory(SyncClosing):
    """
    Hands out transports that run the AI bridge app in this process, streaming.

    ```python
    async with InProcessTransportFactory(bridge_app) as factory:  # the app's lifespan
        client = httpx.AsyncClient(transport=factory.transport_for("openai", Source.AGENTS))
        with with_delegated_api_key_id(key_id):  # around each call: whom it acts for
            response = await client.get("http://aibridge/v1/models")
    ```

    The client is built once; the delegated key id is read when a request is sent, so set
    it around the call. Sync clients: `with InProcessTransportFactory(app) as factory:`, or a
    module-level factory in a process with no `with` block around its life (docs/recipes.md).

    Arguments:
        app: The bridge's ASGI app (an instance: an async callable `app(scope, receive,
            send)`), or `None` while no bridge is registered.
        raise_app_exceptions: Raise the app's exceptions from requests instead of answering
            500 (the default is 500, as a server would).
        strict: Keep the exceptions that a 500 hid and raise the first at `aclose()` / exit.
        disconnect_grace: Seconds an app may run on after its client left.
        max_buffered_chunks: How many body chunks the app may run ahead of the reader.
        root_path: The bridge's mount, under which each request is placed:
            `AIBRIDGE_ROOT_PATH` (`/api/v2/aibridge`, the default) or
            `AI_GATEWAY_ROOT_PATH` (`/api/v2/ai-gateway`, coder's canonical one).
        asgi_root_path: The path the app is mounted under, as a server's `--root-path`:
            the app sees it in `scope["root_path"]` and at the start of `scope["path"]`.
        shutdown_timeout: Seconds `aclose()` / `close()` waits for apps still running after
            their response (background tasks) before cancelling them, as a server's graceful
            shutdown; closing a client never waits for them, nor cancels them.
    """

    def __init__(
        self,
        app: ASGIApp | None,
        *,
        raise_app_exceptions: bool = False,
        strict: bool = False,
        disconnect_grace: float = 1.0,
        max_buffered_chunks: int = DEFAULT_MAX_BUFFERED_CHUNKS,
        root_path: str = AIBRIDGE_ROOT_PATH,
        asgi_root_path: str = "",
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    ) -> None:
        if app is not None:
            check_asgi_app(app)
        self.app = app
        self.root_path = check_root_path(root_path)
        self.raise_app_exceptions = raise_app_exceptions
        self.disconnect_grace = disconnect_grace
        self.max_buffered_chunks = max_buffered_chunks
        self.shutdown_timeout = shutdown_timeout
        self.hidden_app_exceptions: list[BaseException] | None = [] if strict else None
        self._lifespan: Lifespan | None = None
        self._transports: weakref.WeakSet[AIBridgeTransport] = weakref.WeakSet()
        # Every transport's runner, kept by its running apps after the transport is dropped
        # (SDKs drop their clients): the factory's close waits for those apps (behaviour §6).
        self._runners: weakref.WeakSet[AppRunner] = weakref.WeakSet()
        self._scope = ScopeBuilder(root_path=asgi_root_path, lifespan_state=self._state)
        self._loop_host = LoopHost()  # where sync requests run (behaviour §12)

    def _state(self) -> dict[str, Any] | None:
        return self._lifespan.state if self._lifespan is not None else None

    def _explain_failure(self, exc: BaseException, scope: Scope) -> str | None:
        """Why the app failed, when its lifespan never ran and it looked up state that
        startup would have set (behaviour §8): otherwise an opaque `AttributeError`."""
        if self._lifespan is None and looked_up_missing_state(exc, scope):
            return NO_LIFESPAN_HINT
        return None

    @overload
    def transport_for(
        self, provider_name: str, source: Source | str, *, flavor: Literal["httpx"] = ...
    ) -> HTTPXTransport: ...
    @overload
    def transport_for(
        self, provider_name: str, source: Source | str, *, flavor: Literal["httpx2"]
    ) -> HTTPX2Transport: ...
    @overload
    def transport_for(
        self, provider_name: str, source: Source | str, *, flavor: Flavor
    ) -> HTTPXTransport | HTTPX2Transport: ...
    def transport_for(
        self, provider_name: str, source: Source | str, *, flavor: Flavor = "httpx"
    ) -> Any:
        """A transport for `provider_name` (one path segment), tagged with `source`.

        `flavor="httpx"` (the default) gives an `aibridge_transport.Transport`, for
        `httpx.AsyncClient` and `httpx.Client`; `flavor="httpx2"` an
        `aibridge_transport.httpx2.Transport`, for `httpx2.AsyncClient` and `httpx2.Client`,
        with no httpx class in its MRO (what openai 3.x and anthropic >= 1.0 need).
        """
        if self.app is None:
            raise BridgeNotRegisteredError()
        provider = validate_provider_name(provider_name)
        source_name = check_source(source)
        transport_class = flavored_class(
            AIBridgeTransport, streaming_transport_class(flavor), "AIBridgeTransport"
        )
        engine = AppRunner(
            self.app,
            raise_app_exceptions=self.raise_app_exceptions,
            disconnect_grace=self.disconnect_grace,
            max_buffered_chunks=self.max_buffered_chunks,
            shutdown_timeout=self.shutdown_timeout,
            shuts_down=False,  # the factory's close does: it owns the apps (behaviour §6)
            log_label=f"provider={provider} source={source_name}",
            hidden_errors=self.hidden_app_exceptions,
            # Weakly: a runner outlives a dropped factory while its apps run on (behaviour
            # §6), and must not keep it from being collected and stopping its thread (§12).
            explain_failure=_weakly(self._explain_failure),
        )
        transport = transport_class(engine, self._scope, provider, source_name, self.root_path)
        transport.loop_host = self._loop_host  # type: ignore[attr-defined]
        self._transports.add(transport)
        self._runners.add(engine)
        return transport

    async def __aenter__(self) -> Self:
        if self.app is None:
            raise BridgeNotRegisteredError()
        lifespan = Lifespan(self.app)
        await lifespan.start()
        self._lifespan = lifespan
        self._loop_host.attach()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        """Start a loop thread for sync clients and run the app's lifespan on it."""
        enter_in_process(self)
        return self

    def close(self) -> None:
        """`aclose()` on the loop thread of sync clients, then stop that thread."""
        close_in_process(self)

    async def aclose(self) -> None:
        """Close every transport handed out, wait for the apps still running after their
        response (up to `shutdown_timeout`, then cancel them), run lifespan shutdown, then
        (strict) raise.

        A transport's close may raise (a `SystemExit` its app raised after the client left,
        behaviour §7): the other transports are closed and the lifespan shut down all the
        same, and then the first such error is raised.
        """
        failure: BaseException | None = None
        for transport in list(self._transports):
            try:
                await transport.aclose()
            except (Exception, KeyboardInterrupt, SystemExit) as exc:
                failure = failure or exc
        host = self._loop_host
        # The runners of transports already dropped, and of sync requests when they run on
        # this loop; then, as a server at shutdown, wait for what runs on after its response.
        runners = list(self._runners)
        if host.serves_this_thread():
            runners += list(host.engines)
        for runner in runners:
            try:
                await runner.aclose()
            except (Exception, KeyboardInterrupt, SystemExit) as exc:
                failure = failure or exc
        await shut_down(runners)
        for runner in runners:
            failure = failure or runner.take_fatal()  # raised by an app while it was waited for
        if host.owns_thread and not host.serves_this_thread():
            # Sync requests' apps run on the factory's own loop thread: waited for there.
            await anyio.to_thread.run_sync(host.run, _shut_down_on_loop, host)
        host.detach()  # sync requests no longer run on this loop
        lifespan, self._lifespan = self._lifespan, None
        if lifespan is not None:
            await lifespan.stop()
        if host.owns_thread and not host.serves_this_thread():
            # A sync request started the factory's own loop thread: nothing of the library
            # outlives its close (behaviour §6, §12). Joining it blocks, so not on this loop.
            await anyio.to_thread.run_sync(host.close)
        if failure is not None:
            raise failure
        hidden = self.hidden_app_exceptions
        if hidden:
            first = hidden[0]
            hidden.clear()
            raise first


def _weakly(
    method: Callable[[BaseException, Scope], str | None],
) -> Callable[[BaseException, Scope], str | None]:
    """`method`, called through a weak reference to its object (`None` once it is gone)."""
    reference = weakref.WeakMethod(method)

    def call(exc: BaseException, scope: Scope) -> str | None:
        bound = reference()
        return bound(exc, scope) if bound is not None else None

    return call


async def _shut_down_on_loop(host: LoopHost) -> None:
    """On the loop of sync requests: close their runners, wait for their apps (behaviour §6)."""
    runners = list(host.engines)
    for runner in runners:
        await runner.aclose()
    await shut_down(runners)
