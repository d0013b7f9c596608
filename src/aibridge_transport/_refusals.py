"""The library's refusals of a request, logged, and `unwrap` to find them behind an SDK's error.

An SDK may hide what the transport raised: anthropic retries any transport error and then
reports `APIConnectionError("Connection error.")`, ours as its `__cause__` (behaviour §7). So
every refusal of a request by the library (no delegated key id, a transport of the other
client library, a path or identity it cannot send) is also logged, once, at WARNING on the
`aibridge_transport` logger, naming the transport's provider and source. The message is the
error's own, which never quotes a key id (behaviour §4).
"""

from __future__ import annotations

import logging
from typing import TypeVar

from ._errors import AIBridgeTransportError
from ._flavors import FLAVORS

__all__ = ["refused", "unwrap"]

logger = logging.getLogger("aibridge_transport")

_E = TypeVar("_E", bound=BaseException)


def refused(error: _E, label: str) -> _E:
    """`error`, logged as the refusal of a request of the transport `label` describes."""
    logger.warning("refused a request%s: %s", f" ({label})" if label else "", error)
    return error


def _from_client_library(exc: BaseException) -> bool:
    return type(exc).__module__.partition(".")[0] in FLAVORS


def unwrap(exc: BaseException) -> BaseException:
    """The error the transport raised, found behind the exception an SDK raised for it.

    Follows `exc.__cause__` (what `raise ... from` sets, as the SDKs do) and returns the first
    error of this library on that chain (`MissingDelegatedAPIKeyError`,
    `FlavorMismatchError`, ...), else the first exception of httpx or httpx2 on it (a
    `ReadTimeout`, a `RemoteProtocolError`), else `exc` itself.

    ```python
    try:
        await client.messages.create(...)
    except anthropic.APIConnectionError as exc:  # "Connection error."
        cause = aibridge_transport.unwrap(exc)
        if isinstance(cause, aibridge_transport.AIBridgeTransportError):
            raise cause from None  # what the transport refused, and why
        raise
    ```
    """
    client_error: BaseException | None = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, AIBridgeTransportError):
            return current
        if client_error is None and _from_client_library(current):
            client_error = current
        current = current.__cause__
    return client_error if client_error is not None else exc
