"""The two client libraries, httpx and httpx2: naming one, importing it, and building classes.

httpx2 is pydantic's fork of httpx, with the same API under another module name; current SDKs
use it (behaviour §2). A client checks that what its transport hands back is of its own
library (httpx2 asserts `isinstance(response.stream, httpx2.AsyncByteStream)`, anthropic
refuses any httpx class in a transport's MRO), so every transport class is built once per
library here, from one mixin written against the shared API and that library's base class.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Final, Literal, TypeVar

from ._errors import FlavorMismatchError

__all__ = [
    "FLAVORS",
    "HTTPX2_MISSING",
    "Flavor",
    "flavor_module",
    "flavored_class",
    "streaming_transport_class",
    "transport_base",
    "wrong_flavor_error",
]

Flavor = Literal["httpx", "httpx2"]
FLAVORS: Final = ("httpx", "httpx2")

HTTPX2_MISSING: Final = (
    "the httpx2 flavour needs the httpx2 package (the httpx2 extra): pip install httpx2"
)

# Where each flavour's StreamingASGITransport is imported from.
_TRANSPORT_MODULES: Final = {"httpx": "aibridge_transport", "httpx2": "aibridge_transport.httpx2"}

_T = TypeVar("_T")


def _check_flavor(flavor: object) -> str:
    if flavor not in FLAVORS:
        raise ValueError(f"flavor must be 'httpx' or 'httpx2', got {flavor!r}")
    return str(flavor)


def flavor_module(flavor: str) -> ModuleType:
    """The client library of `flavor`, imported on first use (httpx2 is an extra)."""
    name = _check_flavor(flavor)
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        if name == "httpx2":
            raise ImportError(HTTPX2_MISSING) from exc
        raise


def streaming_transport_class(flavor: str) -> type[Any]:
    """This library's `StreamingASGITransport` for `flavor`."""
    if _check_flavor(flavor) == "httpx":
        from ._transport_httpx import StreamingASGITransport
    else:
        from .httpx2 import StreamingASGITransport  # type: ignore[assignment]
    return StreamingASGITransport


def transport_base(flavor: str) -> type[Any]:
    """The class every transport of `flavor` derives from (`Transport` of its module)."""
    if _check_flavor(flavor) == "httpx":
        from ._transport_httpx import Transport
    else:
        from .httpx2 import Transport  # type: ignore[assignment]
    return Transport


# Keyed by the base class, not the flavour's name: a re-imported library (pytester runs do
# that) brings new classes, and its client's isinstance checks expect those.
_CLASSES: dict[tuple[type, ...], type] = {}


def flavored_class(
    mixin: type[_T],
    base: type | tuple[type, ...],
    name: str,
    namespace: dict[str, Any] | None = None,
) -> type[_T]:
    """The class `name[<flavour>]` of `mixin` on `base` (classes of one client library)."""
    bases = base if isinstance(base, tuple) else (base,)
    key = (mixin, *bases)
    cached = _CLASSES.get(key)
    if cached is None:
        flavor = bases[-1].__module__.partition(".")[0]
        built = type(f"{name}[{flavor}]", (mixin, *bases), dict(namespace or {}))
        # Two threads may build it at once: both get the one that was stored first.
        cached = _CLASSES.setdefault(key, built)
    return cached


def wrong_flavor_error(flavor: str, request: object) -> FlavorMismatchError:
    """The error for a request of the other client library than the transport's."""
    other = type(request).__module__.partition(".")[0]
    if other not in FLAVORS:
        other = "httpx2" if flavor == "httpx" else "httpx"
    return FlavorMismatchError(
        f"this transport has the {flavor} flavour, but the request comes from an {other} "
        f'client: build the transport with flavor="{other}" '
        f'(`factory.transport_for(provider, source, flavor="{other}")`, or '
        f"`from {_TRANSPORT_MODULES[other]} import StreamingASGITransport`). "
        "openai 3.x and anthropic 2.x use httpx2.AsyncClient; "
        'plain httpx users use flavor="httpx".'
    )
