"""The library's own errors.

```
AIBridgeTransportError
├── BridgeNotRegisteredError
├── MissingDelegatedAPIKeyError
├── FlavorMismatchError (also a TypeError)
├── GatewayKeyMismatchError
├── RedirectRefusedError
├── InvalidProviderNameError (also a ValueError)
├── PathOutsideProviderError (also a ValueError)
├── InvalidIdentityError (also a ValueError)
└── InvalidRequestHeaderError (also a ValueError)
```

Everything else a request can raise is an exception of the client's own flavour
(httpx or httpx2), or the app's own exception where the raise mode asks for it.
"""

from __future__ import annotations

__all__ = [
    "AIBridgeTransportError",
    "BridgeNotRegisteredError",
    "FlavorMismatchError",
    "GatewayKeyMismatchError",
    "InvalidIdentityError",
    "InvalidProviderNameError",
    "InvalidRequestHeaderError",
    "MissingDelegatedAPIKeyError",
    "PathOutsideProviderError",
    "RedirectRefusedError",
]


class AIBridgeTransportError(Exception):
    """Base class of every error this library raises itself."""


class BridgeNotRegisteredError(AIBridgeTransportError):
    """The factory has no bridge app to hand requests to."""

    def __init__(self) -> None:
        super().__init__("aibridge app not registered")


class MissingDelegatedAPIKeyError(AIBridgeTransportError):
    """A request was made without a delegated API key id on the caller's context."""

    def __init__(self) -> None:
        super().__init__(
            "no delegated API key id on the caller's context: wrap the call in "
            "`with with_delegated_api_key_id(key_id):`"
        )


class FlavorMismatchError(AIBridgeTransportError, TypeError):
    """A request from a client of the other client library (httpx or httpx2) than the
    transport's (behaviour §2)."""


class GatewayKeyMismatchError(AIBridgeTransportError):
    """The standalone bridge refused the gateway key this factory sent."""

    def __init__(self) -> None:
        super().__init__(
            "the standalone bridge refused the gateway key (401 gateway_key_mismatch): "
            "the caller's and the bridge's gateway keys differ"
        )


class RedirectRefusedError(AIBridgeTransportError):
    """The standalone bridge answered with a redirect, which is never followed."""

    def __init__(self, status_code: int, location: str | None) -> None:
        self.status_code = status_code
        self.location = location
        super().__init__(
            f"the bridge answered {status_code} redirect to {location!r}; "
            "redirects are refused so that identity headers never leave the bridge"
        )


class InvalidProviderNameError(AIBridgeTransportError, ValueError):
    """A provider name that is not exactly one path segment."""


class PathOutsideProviderError(AIBridgeTransportError, ValueError):
    """A request path that would leave `<mount>/<provider>/`."""


class InvalidRequestHeaderError(AIBridgeTransportError, ValueError):
    """A request header that no HTTP server would accept (bad name, CR/LF/NUL, too large)."""


class InvalidIdentityError(AIBridgeTransportError, ValueError):
    """A source or delegated API key id that cannot travel as-is (control character,
    surrounding whitespace, empty source), or a workspace id that is not a UUID."""
