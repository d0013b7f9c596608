"""The ASGI scope of a request: built here, in one place, and handed to the exchange.

The request is read through the API httpx and httpx2 share. What the transport's route has
already decided (the path the app sees, the scope extensions) comes in as arguments; the rest
is what uvicorn would give the same app (behaviour §3): header names lower-cased and checked
as a server checks them, the default port filled in, `path` and `raw_path` under the root
path, and a shallow copy of the lifespan state per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote

from ._rules import check_request_headers
from .types import Scope

__all__ = ["ScopeBuilder"]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class ScopeBuilder:
    """What the scopes of one transport (or one factory's transports) share.

    Arguments:
        root_path: The path the app is mounted under; `path` and `raw_path` include it, as
            uvicorn gives them (ASGI: the app strips `root_path` itself).
        client: The `(host, port)` of the client.
        lifespan_state: Returns the state the lifespan startup filled, or `None`.
    """

    __slots__ = ("_raw_root", "_root", "_root_prefix", "client", "lifespan_state", "root_path")

    def __init__(
        self,
        *,
        root_path: str = "",
        client: tuple[str, int] = ("127.0.0.1", 123),
        lifespan_state: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        if not isinstance(root_path, str):
            raise TypeError(f"root_path must be a str, not {type(root_path).__name__}")
        if root_path and not root_path.startswith("/"):
            raise ValueError(f"root_path must be empty or start with '/', got {root_path!r}")
        self.root_path = root_path
        self.client = client
        self.lifespan_state = lifespan_state
        # The prefix without its trailing slash, so that joining it to a path gives one slash.
        self._root = root_path.rstrip("/")
        self._root_prefix = self._root + "/"
        self._raw_root = quote(self._root, safe="/!$&'()*+,;=:@").encode("ascii")

    def build(self, request: Any, path: str, raw_path: bytes, extensions: dict[str, Any]) -> Scope:
        """The scope for `request`, the app seeing `path` / `raw_path` (no query)."""
        url = request.url
        root = self._root
        if root and path != root and not path.startswith(self._root_prefix):
            # A path already under the root path is not prefixed twice.
            path = root + path
            raw_path = self._raw_root + raw_path
        scheme: str = url.scheme
        port: int | None = url.port
        state = self.lifespan_state() if self.lifespan_state is not None else None
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": scheme,
            "path": path,
            "raw_path": raw_path,
            "query_string": url.query,
            "root_path": self.root_path,
            "headers": check_request_headers(request.headers.raw),
            "server": (url.host, port if port is not None else _DEFAULT_PORTS.get(scheme, 80)),
            "client": self.client,
            "state": dict(state) if state is not None else {},
            "extensions": extensions,
        }
