"""The sync side of `HTTPTransportFactory`'s transports (behaviour §11 and §12).

No loop thread here: a sync request goes through the flavour's own sync connection pool
(`httpx.HTTPTransport`), one per factory and flavour, with the same path rules, identity
headers, redirect refusal and gateway key handling as the async side.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from ._bridge_gateway import bridge_refusal
from ._sync import Reader

__all__ = ["SyncHTTPRouteMixin", "close_http_factory", "pool_options", "sync_http_body_class"]

_POOLS = threading.Lock()


class SyncHTTPBody:
    """The bridge's response body for a sync client, closed with the transport."""

    stream_closed: ClassVar[type[Exception]]

    __slots__ = ("__weakref__", "_closed", "_ended", "_iterator", "_network", "_owner", "_stream")

    def __init__(
        self, stream: Any, owner: weakref.WeakSet[SyncHTTPBody], network_stream: Any = None
    ) -> None:
        self._stream = stream
        self._iterator: Iterator[bytes] | None = None
        self._closed = False
        self._ended = False
        self._network = network_stream
        self._owner = owner
        owner.add(self)

    # One iterator over the pool's stream: iterating again resumes (behaviour §5).
    def __iter__(self) -> Iterator[bytes]:
        return Reader(self)

    def __next__(self) -> bytes:
        if self._closed:
            raise self.stream_closed()
        if self._iterator is None:
            self._iterator = iter(self._stream)
        try:
            return next(self._iterator)
        except StopIteration:
            self._ended = True
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._owner.discard(self)
        self._iterator = None
        if not self._ended:
            # A reader blocked on the socket in another thread would wait for the bridge's
            # next bytes: shutting the socket down ends its read now (behaviour §12). A body
            # read to its end keeps its connection for the pool.
            sock = self._network.get_extra_info("socket") if self._network is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._stream.close()


_BODIES: dict[type, type[SyncHTTPBody]] = {}


def sync_http_body_class(module: Any) -> type[SyncHTTPBody]:
    cached = _BODIES.get(module.SyncByteStream)
    if cached is None:
        cached = type(
            f"HTTPBridgeSyncBody[{module.__name__}]",
            (SyncHTTPBody, module.SyncByteStream),
            {"__slots__": (), "stream_closed": module.StreamClosed},
        )
        _BODIES[module.SyncByteStream] = cached
    return cached


def pool_options(module: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The keywords of a flavour's connection pool, sync or async, for the factory's options.

    `retries=0`: a request is never re-sent by the transport, not even after a connection
    failure (behaviour §11). It is httpx's default; it is spelt out so that it stays.
    """
    return {
        "verify": options["verify"],
        "retries": 0,
        "limits": module.Limits(
            max_connections=options["max_connections"],
            max_keepalive_connections=options["max_keepalive_connections"],
            keepalive_expiry=options["keepalive_expiry"],
        ),
    }


def _sync_pool(target: Any) -> Any:
    pool = getattr(target, "sync_pool", None)
    if pool is None:
        with _POOLS:
            pool = getattr(target, "sync_pool", None)
            if pool is None:
                module = target.module
                pool = target.sync_pool = module.HTTPTransport(
                    **pool_options(module, target.pool_options)
                )
    return pool


class SyncHTTPRouteMixin:
    """`handle_request` and `close` for the transports of `HTTPTransportFactory`."""

    _target: Any
    _provider: str
    _identity_source: bytes
    _gateway_key: bytes
    _sync_bodies: weakref.WeakSet[SyncHTTPBody] | None = None

    if TYPE_CHECKING:

        def forward(self, request: Any) -> Any: ...

    def handle_request(self, request: Any) -> Any:
        # Built in the async side's own frame: no local here holds the gateway key in plain
        # bytes when the pool fails (behaviour §11).
        forwarded = self.forward(request)
        response = _sync_pool(self._target).handle_request(forwarded)
        refusal = bridge_refusal(response)
        if refusal is not None:
            response.stream.close()
            raise refusal
        status: int = response.status_code
        bodies = self._sync_bodies
        if bodies is None:
            bodies = self._sync_bodies = weakref.WeakSet()
        module = self._target.module
        return module.Response(
            status,
            headers=response.headers.raw,
            stream=sync_http_body_class(module)(
                response.stream, bodies, response.extensions.get("network_stream")
            ),
            extensions=response.extensions,
        )

    def close(self) -> None:
        """Close this transport's open sync responses; the shared pool stays open."""
        if self._sync_bodies is not None:
            for body in list(self._sync_bodies):
                body.close()


def close_http_factory(factory: Any) -> None:
    """`HTTPTransportFactory.close()`: its transports' sync responses, then its sync pools."""
    for transport in list(factory._transports):
        transport.close()
    with factory._lock:
        targets = list(factory._targets.values())
    for target in targets:
        pool = getattr(target, "sync_pool", None)
        if pool is not None:
            target.sync_pool = None
            pool.close()
