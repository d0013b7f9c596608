"""The httpx2 flavour: the same transport for `httpx2.AsyncClient`.

Needs the `httpx2` extra. Nothing here has an httpx class in its MRO, so SDKs that refuse
httpx objects accept it.
"""

from __future__ import annotations

from ._flavors import HTTPX2_MISSING

try:
    import httpx2
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(HTTPX2_MISSING) from exc

from ._sync_transport import SyncTransportMixin
from ._transport import FlavorClasses, ResponseBody, TransportCore

__all__ = ["StreamingASGITransport", "Transport"]


class Transport(httpx2.AsyncBaseTransport, httpx2.BaseTransport):
    """
    What every transport of the httpx2 flavour is: one for `httpx2.AsyncClient` and
    `httpx2.Client` alike (behaviour §12), with no httpx class in its MRO.

    `StreamingASGITransport` here and what both factories' `transport_for(...,
    flavor="httpx2")` return derive from it (behaviour §2).
    """


class _HTTPX2ResponseBody(ResponseBody, httpx2.AsyncByteStream):
    __slots__ = ()


class StreamingASGITransport(SyncTransportMixin, TransportCore, Transport):
    """
    A drop-in replacement for `httpx2.ASGITransport` that streams the response.

    Arguments are those of `aibridge_transport.StreamingASGITransport`.
    """


_HTTPX2ResponseBody.flavor = StreamingASGITransport.flavor = FlavorClasses(
    httpx2, _HTTPX2ResponseBody
)
