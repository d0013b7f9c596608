from __future__ import annotations

import httpx

import aibridge_transport
from aibridge_transport import (
    AI_GATEWAY_ROOT_PATH,
    AIBRIDGE_ROOT_PATH,
    AIBridgeTransportError,
    BridgeNotRegisteredError,
    GatewayKeyMismatchError,
    InvalidIdentityError,
    InvalidProviderNameError,
    InvalidRequestHeaderError,
    MissingDelegatedAPIKeyError,
    PathOutsideProviderError,
    RedirectRefusedError,
    StreamingASGITransport,
)

CONTRACT_NAMES = {
    "AIBRIDGE_ROOT_PATH",
    "AI_GATEWAY_ROOT_PATH",
    "with_delegated_attribution",
    "delegated_attribution_from_context",
    "Source",
    "with_source",
    "source_from_context",
    "with_delegated_api_key_id",
    "delegated_api_key_id_from_context",
    "TransportFactory",
    "InProcessTransportFactory",
    "StreamingASGITransport",
    "MissingDelegatedAPIKeyError",
    "BridgeNotRegisteredError",
}


def test_the_public_names_are_exported() -> None:
    assert CONTRACT_NAMES <= set(aibridge_transport.__all__)
    for name in aibridge_transport.__all__:
        assert hasattr(aibridge_transport, name), name


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: constants, then classes, then everything else.
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


def test_all_is_sorted_and_unique() -> None:
    names = list(aibridge_transport.__all__)
    assert names == sorted(names, key=_isort_key)
    assert len(names) == len(set(names))


def test_root_paths() -> None:
    assert AIBRIDGE_ROOT_PATH == "/api/v2/aibridge"
    assert AI_GATEWAY_ROOT_PATH == "/api/v2/ai-gateway"


def test_errors_share_one_base() -> None:
    for error in (
        BridgeNotRegisteredError,
        MissingDelegatedAPIKeyError,
        GatewayKeyMismatchError,
        RedirectRefusedError,
        InvalidProviderNameError,
        PathOutsideProviderError,
        InvalidIdentityError,
        InvalidRequestHeaderError,
    ):
        assert issubclass(error, AIBridgeTransportError)


def test_refusals_of_bad_values_are_value_errors() -> None:
    for error in (
        InvalidProviderNameError,
        PathOutsideProviderError,
        InvalidIdentityError,
        InvalidRequestHeaderError,
    ):
        assert issubclass(error, ValueError)


def test_streaming_transport_is_an_httpx_transport() -> None:
    assert issubclass(StreamingASGITransport, httpx.AsyncBaseTransport)


def test_httpx2_transport_has_no_httpx_class_in_its_mro() -> None:
    from aibridge_transport.httpx2 import StreamingASGITransport as Httpx2Transport

    assert not any(cls.__module__.split(".")[0] == "httpx" for cls in Httpx2Transport.__mro__)
