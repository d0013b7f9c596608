"""`ForwardingApp`: the smallest real bridge, for recording: it sends each request on to the
provider's base URL with the caller's own key and streams the answer back as it arrives."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

import anyio
import httpx

from ..types import Receive, Scope, Send
from ._asgi import serve_lifespan
from ._bridge_route import split_bridge_path
from ._scrub import DEFAULT_SCRUBBED_HEADER_PREFIXES

__all__ = ["DEFAULT_UPSTREAMS", "HOP_BY_HOP", "ForwardingApp"]

DEFAULT_UPSTREAMS: Final[Mapping[str, str]] = {
    "openai": "https://api.openai.com",
    "anthropic": "https://api.anthropic.com",
}
"""Provider names to the base URL their routes are sent to."""

# Hop-by-hop headers and those the client library sets again; the gateway's identity headers
# are the bridge's business, never the provider's (behaviour §11).
_NOT_FORWARDED: Final = frozenset(
    {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "te", "upgrade"}
)
HOP_BY_HOP: Final = frozenset({"connection", "keep-alive", "transfer-encoding"})
"""Response headers about one connection: the server in front sets its own."""


class ForwardingApp:
    """
    An ASGI bridge that forwards `<mount>/<provider>/<route>` to `upstreams[provider] +
    <route>` with the caller's headers (its `authorization` or `x-api-key` included), asks for
    an uncompressed answer, and streams the body back chunk by chunk as it arrives.

    Put a `RecordingMiddleware` around it to record real provider traffic:

    ```python
    recorder = RecordingMiddleware(ForwardingApp())  # api.openai.com, api.anthropic.com
    ```

    Arguments:
        upstreams: Provider names to base URLs (default: `DEFAULT_UPSTREAMS`).
        timeout: The upstream client's timeout, in seconds (`None`: none).
    """

    def __init__(
        self, upstreams: Mapping[str, str] | None = None, *, timeout: float | None = 600.0
    ) -> None:
        self.upstreams = dict(upstreams if upstreams is not None else DEFAULT_UPSTREAMS)
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        """Close the upstream connections (also done at lifespan shutdown)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send, on_shutdown=self.aclose)
            return
        if scope["type"] != "http":
            return
        provider, route = split_bridge_path(scope["path"])
        base = self.upstreams.get(provider) if provider is not None else None
        if base is None:
            await _refuse(send, 404, f"no upstream for provider {provider!r} ({scope['path']})")
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = [
            (name, value)
            for name, value in scope.get("headers", [])
            if name.decode("latin-1") not in _NOT_FORWARDED
            and not name.decode("latin-1").startswith(DEFAULT_SCRUBBED_HEADER_PREFIXES)
            and name != b"accept-encoding"
        ]
        headers.append((b"accept-encoding", b"identity"))  # readable cassettes
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        url = httpx.URL(base.rstrip("/") + route, query=scope.get("query_string", b""))
        request = self._client.build_request(scope["method"], url, headers=headers, content=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            await _refuse(send, 502, f"upstream unreachable: {type(exc).__name__}")
            return
        try:
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    # A client that leaves ends the upstream request too, as a proxy does.
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                await _relay(response, send)
                group.cancel_scope.cancel()
        finally:
            await response.aclose()


async def _relay(response: httpx.Response, send: Send) -> None:
    returned = [
        (name, value)
        for name, value in response.headers.raw
        if name.lower().decode("latin-1") not in HOP_BY_HOP
    ]
    await send({"type": "http.response.start", "status": response.status_code, "headers": returned})
    try:
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except httpx.HTTPError:
        return  # the upstream broke off: so does this body (an incomplete response)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": {"message": message, "type": "bridge_error"}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
