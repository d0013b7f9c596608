"""The caller's side of behaviour §11: the same bridge, reached over HTTP.

`HTTPTransportFactory` hands out transports with the aibridge rules of the in-process
factory (path rewrite, the delegated key gate) that send the request to a standalone bridge
over a real connection pool, the identity travelling in coder's `X-Coder-AI-Gateway-*`
headers next to the gateway key. The bridge side is `GatewayAuthMiddleware`, or a Coder
deployment's own standalone AI Gateway.

A request is sent once. The pools are built with `retries=0` (httpx's own default, said
aloud): nothing here replays a request, not even after a connection failure; retrying is the
caller's decision, as in coder (behaviour §11).
"""

from __future__ import annotations

import ssl
import threading
import weakref
from collections.abc import AsyncIterator
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, overload

import anyio
import httpx

from ._bridge_gateway import (
    DELEGATED_KEY_ID_HEADER,
    GATEWAY_KEY_HEADER,
    HEADER_PREFIX,
    SOURCE_HEADER,
    WORKSPACE_ID_HEADER,
    GatewayKey,
    bridge_refusal,
)
from ._bridge_identity import (
    Source,
    check_source,
    delegated_api_key_id_from_context,
    delegated_attribution_from_context,
)
from ._bridge_over_http_sync import SyncHTTPRouteMixin, close_http_factory, pool_options
from ._bridge_paths import (
    AIBRIDGE_ROOT_PATH,
    BRIDGE_ROOT_PATHS,
    check_root_path,
    place_request_path,
    validate_provider_name,
)
from ._errors import AIBridgeTransportError, MissingDelegatedAPIKeyError
from ._flavors import Flavor, flavor_module, flavored_class, transport_base, wrong_flavor_error
from ._loop_host import SyncClosing
from ._refusals import refused
from ._rules import path_without_query

if TYPE_CHECKING:
    from ._transport_httpx import Transport as HTTPXTransport
    from .httpx2 import Transport as HTTPX2Transport

__all__ = ["HTTPTransportFactory"]


class _BridgeResponseBody:
    """The bridge's response body, closed with the transport that fetched it.

    One iterator over the pool's stream is kept, so iterating again after stopping resumes
    where it stopped, as the in-process body does (behaviour §5).
    """

    stream_closed: ClassVar[type[Exception]]

    __slots__ = ("__weakref__", "_closed", "_iterator", "_owner", "_stream")

    def __init__(self, stream: Any, owner: weakref.WeakSet[_BridgeResponseBody]) -> None:
        self._stream = stream
        self._iterator: AsyncIterator[bytes] | None = None
        self._closed = False
        self._owner = owner
        owner.add(self)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise self.stream_closed()  # closed under the reader by the transport's aclose()
        if self._iterator is None:
            self._iterator = aiter(self._stream)
        return await anext(self._iterator)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._owner.discard(self)
        iterator, self._iterator = self._iterator, None
        await self._stream.aclose()
        if iterator is not None:
            await _finish(iterator)


async def _finish(iterator: AsyncIterator[bytes]) -> None:
    """Run the pool's suspended generators to their end once the connection is closed.

    httpcore reads the body through nested async generators; left suspended after an early
    close they are garbage-collected unfinished, which trio reports as a `ResourceWarning`.
    With the connection closed, the next step fails at once (or ends the body, if it was
    already buffered) and finishes every one of them.
    """
    with anyio.CancelScope(shield=True):
        while True:
            try:
                await anext(iterator)
            except Exception:  # the read on the closed connection, or StopAsyncIteration
                return


class _Target:
    """Where one factory sends, in the form one client flavour needs."""

    def __init__(
        self, module: ModuleType, base_url: str, root: str, options: dict[str, Any]
    ) -> None:
        self.module = module
        self.base = module.URL(base_url)
        self.root = root
        self.prefix: bytes = _without_mount(path_without_query(self.base.raw_path).rstrip(b"/"))
        self.host: bytes = self.base.netloc
        self.request_class: Any = module.Request
        self.pool_options = options  # for the sync pool, made on first sync use
        self.pool: Any = module.AsyncHTTPTransport(**pool_options(module, options))


def _mount_of(base_path: bytes) -> str | None:
    """The mount a base URL's path ends with (`.../api/v2/ai-gateway`), if any."""
    for root in BRIDGE_ROOT_PATHS:
        if base_path.endswith(root.encode()):
            return root
    return None


def _without_mount(base_path: bytes) -> bytes:
    # A base URL that holds a mount already is never prefixed twice (behaviour §2).
    root = _mount_of(base_path)
    return base_path[: -len(root)] if root is not None else base_path


class _RedactedHeaders(list[tuple[bytes, bytes]]):
    """The forwarded request's headers; printed (a traceback's locals) without the gateway key."""

    __slots__ = ()

    def __repr__(self) -> str:
        shown = [
            (name, b"<hidden>" if name == GATEWAY_KEY_HEADER else value) for name, value in self
        ]
        return repr(shown)


class _HTTPBridgeTransport:
    """The transport, written once against the API httpx and httpx2 share."""

    body_class: ClassVar[type[_BridgeResponseBody]]

    def __init__(
        self, target: _Target, provider: str, source: str, gateway_key: GatewayKey
    ) -> None:
        self._target = target
        self._provider = provider
        self._identity_source = source.encode("utf-8")
        self._gateway_key = gateway_key
        self._bodies: weakref.WeakSet[_BridgeResponseBody] = weakref.WeakSet()

    def _label(self) -> str:
        """How a log line names this transport (as the in-process one's do)."""
        return f"provider={self._provider} source={self._identity_source.decode()}"

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} provider={self._provider!r} bridge={str(self._target.base)!r}>"
        )

    async def handle_async_request(self, request: Any) -> Any:
        target = self._target
        forwarded = self.forward(request)
        # No local of this frame holds the gateway key in plain bytes: a traceback rendered
        # with its locals (the pool failing below) must not print it (behaviour §11).
        response = await target.pool.handle_async_request(forwarded)
        refusal = bridge_refusal(response)
        if refusal is not None:
            await response.stream.aclose()
            raise refusal
        return target.module.Response(
            response.status_code,
            headers=response.headers.raw,
            stream=self.body_class(response.stream, self._bodies),
            extensions=response.extensions,
        )

    def forward(self, request: Any) -> Any:
        """The request to the bridge: a new one, the caller's is never mutated (behaviour §3).

        Refuses a request of the other client library (behaviour §2) and one without a
        delegated key id (behaviour §4) before anything is sent. Built in a frame of its own,
        gone before anything is sent: no frame of a failing request holds the gateway key in
        a local (behaviour §11).
        """
        target = self._target
        if type(request) is not target.request_class and not isinstance(
            request, target.request_class
        ):
            raise refused(wrong_flavor_error(target.module.__name__, request), self._label())
        key_id = delegated_api_key_id_from_context()
        if key_id is None:
            raise refused(MissingDelegatedAPIKeyError(), self._label())
        url = request.url
        try:
            placed = place_request_path(self._provider, url.raw_path, target.root)
        except AIBridgeTransportError as exc:
            refused(exc, self._label())
            raise
        query: bytes = url.query
        bridge_url = target.base.copy_with(
            raw_path=target.prefix + placed.raw_path + (b"?" + query if query else b"")
        )
        # The caller's own X-Coder-AI-Gateway-* headers are never trusted, so never sent
        # (behaviour §11).
        headers = _RedactedHeaders([(b"Host", target.host)])
        headers += [
            (name, value)
            for name, value in request.headers.raw
            if not (name.lower() == b"host" or name.lower().startswith(HEADER_PREFIX))
        ]
        self._gateway_key.add_to(headers)
        headers += [
            (DELEGATED_KEY_ID_HEADER, key_id.encode("utf-8")),
            (SOURCE_HEADER, self._identity_source),
        ]
        workspace_id = delegated_attribution_from_context()
        if workspace_id is not None:
            headers.append((WORKSPACE_ID_HEADER, str(workspace_id).encode("ascii")))
        return target.module.Request(
            request.method,
            bridge_url,
            headers=headers,
            stream=request.stream,
            extensions=dict(request.extensions),
        )

    async def aclose(self) -> None:
        """Close every response of this transport still open; the shared pool stays open."""
        for body in list(self._bodies):
            await body.aclose()


def _route_class(module: ModuleType) -> type[_HTTPBridgeTransport]:
    body = flavored_class(
        _BridgeResponseBody,
        module.AsyncByteStream,
        "HTTPBridgeBody",
        {"__slots__": (), "stream_closed": module.StreamClosed},
    )
    return flavored_class(
        _HTTPBridgeTransport,
        (SyncHTTPRouteMixin, transport_base(module.__name__)),
        "HTTPBridgeTransport",
        {"body_class": body},
    )


def _check_base_url(base_url: str) -> str:
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str, not {type(base_url).__name__}")
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
    if url.query or url.fragment:
        raise ValueError("base_url must not hold a query or a fragment")
    if url.userinfo:
        raise ValueError("base_url must not hold credentials; the gateway key authenticates")
    return base_url


def _choose_mount(base_url: str, root_path: str | None) -> str:
    in_base = _mount_of(path_without_query(httpx.URL(base_url).raw_path).rstrip(b"/"))
    if root_path is None:
        return in_base or AIBRIDGE_ROOT_PATH
    root = check_root_path(root_path)
    if in_base is not None and in_base != root:
        raise ValueError(
            f"base_url ends with the mount {in_base!r} but root_path is {root!r}; give one of them"
        )
    return root


class HTTPTransportFactory(SyncClosing):
    """
    Hands out transports that send to a standalone bridge over HTTP (behaviour §11).

    A drop-in for `InProcessTransportFactory`: the same `transport_for(provider, source,
    flavor=...)`, the same path rules and the same `MissingDelegatedAPIKeyError` gate. The
    bridge must run behind `GatewayAuthMiddleware` with the same gateway key.

    ```python
    factory = HTTPTransportFactory("http://aibridge.internal:8080", gateway_key)
    client = httpx.AsyncClient(transport=factory.transport_for("openai", Source.AGENTS))
    with with_delegated_api_key_id(key_id):  # around each call: whom it acts for
        response = await client.get("http://aibridge/v1/models")
    ...
    await factory.aclose()
    ```

    Each flavour (httpx, httpx2) gets one connection pool per factory, shared by all its
    transports; `aclose()` (or leaving `async with factory:`) closes them. Connections belong
    to the event loop that opened them: use a factory from one event loop. A transport's own
    `aclose()` closes its open responses only. Redirects raise `RedirectRefusedError`; a
    bridge that refuses the key raises `GatewayKeyMismatchError`. Everything else is the
    client's own exceptions, as from any HTTP transport.

    Arguments:
        base_url: The bridge's URL, with an optional path prefix
            (`https://gw.example/aibridge-svc` sends to `.../aibridge-svc/api/v2/aibridge/...`).
            A base URL that ends with a mount (`https://coder.example/api/v2/ai-gateway`)
            is not prefixed again, and names the mount.
        gateway_key: The secret the bridge's `GatewayAuthMiddleware` (or a Coder
            deployment's AI Gateway) checks. Not empty.
        root_path: The bridge's mount: `AIBRIDGE_ROOT_PATH` (`/api/v2/aibridge`) or
            `AI_GATEWAY_ROOT_PATH` (`/api/v2/ai-gateway`). The default is the mount the base
            URL ends with, else `AIBRIDGE_ROOT_PATH`.
        verify: TLS verification, as for `httpx.AsyncHTTPTransport`.
        max_connections: Upper bound of connections per pool.
        max_keepalive_connections: Idle connections kept per pool.
        keepalive_expiry: Seconds an idle connection is kept.
    """

    def __init__(
        self,
        base_url: str,
        gateway_key: str,
        *,
        root_path: str | None = None,
        verify: ssl.SSLContext | str | bool = True,
        max_connections: int | None = 100,
        max_keepalive_connections: int | None = 20,
        keepalive_expiry: float | None = 5.0,
    ) -> None:
        self.base_url = _check_base_url(base_url)
        self.root_path = _choose_mount(self.base_url, root_path)
        self._gateway_key = GatewayKey(gateway_key)
        self._pool_options: dict[str, Any] = {
            "verify": verify,
            "max_connections": max_connections,
            "max_keepalive_connections": max_keepalive_connections,
            "keepalive_expiry": keepalive_expiry,
        }
        self._targets: dict[str, _Target] = {}
        self._lock = threading.Lock()
        self._transports: weakref.WeakSet[_HTTPBridgeTransport] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, gateway_key=<hidden>)"

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

        The same overloads as `InProcessTransportFactory.transport_for`: `flavor="httpx"`
        (the default) gives an `aibridge_transport.Transport`, `flavor="httpx2"` an
        `aibridge_transport.httpx2.Transport`.
        """
        module = flavor_module(flavor)
        provider = validate_provider_name(provider_name)
        source_name = check_source(source)
        with self._lock:  # one pool per flavour, even when first asked from two threads
            target = self._targets.get(flavor)
            if target is None:
                target = _Target(module, self.base_url, self.root_path, self._pool_options)
                self._targets[flavor] = target
        transport = _route_class(module)(target, provider, source_name, self._gateway_key)
        self._transports.add(transport)
        return transport

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def close(self) -> None:
        """Close every transport's open sync responses, then the sync connection pools."""
        close_http_factory(self)

    async def aclose(self) -> None:
        """Close every transport's open responses, then the connection pools."""
        close_http_factory(self)  # the sync side's too (behaviour §12)
        for transport in list(self._transports):
            await transport.aclose()
        with self._lock:
            targets, self._targets = list(self._targets.values()), {}
        for target in targets:
            await target.pool.aclose()
