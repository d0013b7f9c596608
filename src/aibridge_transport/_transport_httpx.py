"""The httpx flavour."""

from __future__ import annotations

import httpx

from ._sync_transport import SyncTransportMixin
from ._transport import FlavorClasses, ResponseBody, TransportCore

__all__ = ["StreamingASGITransport", "Transport"]


class Transport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """
    What every transport of the httpx flavour is: one for `httpx.AsyncClient` and
    `httpx.Client` alike (behaviour §12).

    `StreamingASGITransport` and what both factories' `transport_for(...)` return derive
    from it, so a type checker knows the transport fits an httpx client and not an httpx2
    one (behaviour §2).
    """


class _HTTPXResponseBody(ResponseBody, httpx.AsyncByteStream):
    __slots__ = ()


class StreamingASGITransport(SyncTransportMixin, TransportCore, Transport):
    """
    A drop-in replacement for `httpx.ASGITransport` that streams the response.

    The response is returned as soon as the app sends `http.response.start`, and each body
    chunk reaches the reader as the app sends it.

    ```python
    transport = StreamingASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        async with client.stream("GET", "/events") as response:
            async for chunk in response.aiter_bytes():
                ...
    ```

    Arguments:
        app: The ASGI application.
        raise_app_exceptions: Raise the app's exception from the request (the default), or
            answer `500 Internal Server Error` when the app fails before the response starts.
        root_path: The root path on which the ASGI application is mounted.
        client: A two-tuple indicating the client IP and port of incoming requests.
        disconnect_grace: Seconds an app may run on after the client left before its task
            is cancelled; closing a complete response waits this long for the app to end.
        max_buffered_chunks: How many body chunks the app may run ahead of the reader.
        shutdown_timeout: Seconds the transport's close waits for apps still running after
            their response (background tasks) before cancelling them.
    """


_HTTPXResponseBody.flavor = StreamingASGITransport.flavor = FlavorClasses(httpx, _HTTPXResponseBody)
