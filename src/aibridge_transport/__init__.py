"""A streaming in-process ASGI transport for httpx and httpx2, with an AI bridge factory."""

from __future__ import annotations

from ._bridge_factory import InProcessTransportFactory, TransportFactory
from ._bridge_gateway import GatewayAuthMiddleware
from ._bridge_identity import (
    Source,
    delegated_api_key_id_from_context,
    delegated_attribution_from_context,
    source_from_context,
    with_delegated_api_key_id,
    with_delegated_attribution,
    with_source,
)
from ._bridge_over_http import HTTPTransportFactory
from ._bridge_paths import AI_GATEWAY_ROOT_PATH, AIBRIDGE_ROOT_PATH
from ._bridge_slot import TransportFactorySlot
from ._errors import (
    AIBridgeTransportError,
    BridgeNotRegisteredError,
    FlavorMismatchError,
    GatewayKeyMismatchError,
    InvalidIdentityError,
    InvalidProviderNameError,
    InvalidRequestHeaderError,
    MissingDelegatedAPIKeyError,
    PathOutsideProviderError,
    RedirectRefusedError,
)
from ._lifespan import LifespanError
from ._refusals import unwrap
from ._transport_httpx import StreamingASGITransport, Transport

__version__ = "0.1.0"

__all__ = [
    "AIBRIDGE_ROOT_PATH",
    "AI_GATEWAY_ROOT_PATH",
    "AIBridgeTransportError",
    "BridgeNotRegisteredError",
    "FlavorMismatchError",
    "GatewayAuthMiddleware",
    "GatewayKeyMismatchError",
    "HTTPTransportFactory",
    "InProcessTransportFactory",
    "InvalidIdentityError",
    "InvalidProviderNameError",
    "InvalidRequestHeaderError",
    "LifespanError",
    "MissingDelegatedAPIKeyError",
    "PathOutsideProviderError",
    "RedirectRefusedError",
    "Source",
    "StreamingASGITransport",
    "Transport",
    "TransportFactory",
    "TransportFactorySlot",
    "__version__",
    "delegated_api_key_id_from_context",
    "delegated_attribution_from_context",
    "source_from_context",
    "unwrap",
    "with_delegated_api_key_id",
    "with_delegated_attribution",
    "with_source",
]
