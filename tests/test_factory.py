"""Behaviour §§2, 3 and 4: the factory, the request the app sees, identity."""

from __future__ import annotations

import contextvars
import functools
import json
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from asgi import chunk, start

from aibridge_transport import (
    BridgeNotRegisteredError,
    InProcessTransportFactory,
    MissingDelegatedAPIKeyError,
    PathOutsideProviderError,
    Source,
    StreamingASGITransport,
    TransportFactory,
    TransportFactorySlot,
    delegated_api_key_id_from_context,
    source_from_context,
    with_delegated_api_key_id,
)
from aibridge_transport.httpx2 import StreamingASGITransport as StreamingASGITransport2
from aibridge_transport.testing import FakeAIBridge
from aibridge_transport.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio

app_var: contextvars.ContextVar[str] = contextvars.ContextVar("app_var", default="unset")


async def echo_scope(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with what the app saw: scope fields, identity in the context and in a child task."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    child_seen: dict[str, str | None] = {}

    async def child() -> None:
        child_seen["source"] = source_from_context()
        child_seen["key"] = delegated_api_key_id_from_context()

    async with anyio.create_task_group() as group:
        group.start_soon(child)
    app_var.set("set by the app")
    seen = {
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode(),
        "query_string": scope["query_string"].decode(),
        "method": scope["method"],
        "scheme": scope["scheme"],
        "server": list(scope["server"]),
        "client": list(scope["client"]),
        "root_path": scope["root_path"],
        "http_version": scope["http_version"],
        "asgi": scope["asgi"],
        "type": scope["type"],
        "headers": [[name.decode(), value.decode()] for name, value in scope["headers"]],
        "state": scope["state"],
        "aibridge": scope["extensions"]["aibridge"],
        "source": source_from_context(),
        "key": delegated_api_key_id_from_context(),
        "child": child_seen,
        "body": body.decode(),
    }
    await send(start())
    await send(chunk(json.dumps(seen).encode(), more_body=False))


def client_for(factory: InProcessTransportFactory, provider: str = "openai") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=factory.transport_for(provider, Source.AGENTS), base_url="http://aibridge"
    )


def test_factory_without_app_is_not_registered() -> None:
    with pytest.raises(BridgeNotRegisteredError, match="aibridge app not registered"):
        InProcessTransportFactory(None).transport_for("openai", Source.AGENTS)


def test_factory_is_a_transport_factory() -> None:
    factory: TransportFactory = InProcessTransportFactory(echo_scope)
    assert isinstance(factory.transport_for("openai", "agents"), httpx.AsyncBaseTransport)


def test_empty_provider_name() -> None:
    with pytest.raises(ValueError, match="provider name is required"):
        InProcessTransportFactory(echo_scope).transport_for("", Source.AGENTS)


@pytest.mark.parametrize("name", [".", "..", "a/b", "a\\b", "a%b", "a?b", "a#b", "a b", "a\x01"])
def test_invalid_provider_names(name: str) -> None:
    with pytest.raises(ValueError, match=r"provider name .* (holds|is a dot segment)"):
        InProcessTransportFactory(echo_scope).transport_for(name, Source.AGENTS)


def test_empty_source_is_refused() -> None:
    with pytest.raises(ValueError, match="source is required"):
        InProcessTransportFactory(echo_scope).transport_for("openai", "")


def test_flavours() -> None:
    factory = InProcessTransportFactory(echo_scope)
    assert isinstance(factory.transport_for("openai", "agents"), httpx.AsyncBaseTransport)
    second = factory.transport_for("openai", "agents", flavor="httpx2")
    assert isinstance(second, httpx2.AsyncBaseTransport)
    assert not any(cls.__module__.split(".")[0] == "httpx" for cls in type(second).__mro__)
    with pytest.raises(ValueError, match="flavor"):
        factory.transport_for("openai", "agents", flavor="requests")  # type: ignore[call-overload]


async def test_path_rewrite_and_scope_fidelity() -> None:
    factory = InProcessTransportFactory(echo_scope)
    with with_delegated_api_key_id("key-1"):
        async with client_for(factory) as client:
            response = await client.post(
                "https://ignored.example:8443/v1/chat/completions?x=1",
                content=b"hello",
                headers=[("X-Custom", "b"), ("x-custom", "a")],
            )
    seen = response.json()
    assert seen["path"] == "/api/v2/aibridge/openai/v1/chat/completions"
    assert seen["raw_path"] == "/api/v2/aibridge/openai/v1/chat/completions"
    assert seen["query_string"] == "x=1"
    assert seen["type"] == "http"
    assert seen["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert seen["http_version"] == "1.1"
    assert seen["method"] == "POST"
    assert seen["scheme"] == "https"
    assert seen["server"] == ["ignored.example", 8443]
    assert seen["client"] == ["127.0.0.1", 123]
    assert seen["root_path"] == ""
    assert seen["state"] == {}
    assert seen["body"] == "hello"
    custom = [header for header in seen["headers"] if header[0] == "x-custom"]
    assert custom == [["x-custom", "b"], ["x-custom", "a"]]
    assert all(name == name.lower() for name, _ in seen["headers"])


async def test_default_port_is_filled_in() -> None:
    factory = InProcessTransportFactory(echo_scope)
    with with_delegated_api_key_id("key-1"):
        async with client_for(factory) as client:
            http = (await client.get("http://host/x")).json()
            https = (await client.get("https://host/x")).json()
    assert http["server"] == ["host", 80]
    assert https["server"] == ["host", 443]


async def test_prefixed_base_url_is_not_prefixed_twice() -> None:
    factory = InProcessTransportFactory(echo_scope)
    with with_delegated_api_key_id("key-1"):
        async with httpx.AsyncClient(
            transport=factory.transport_for("anthropic", Source.AGENTS),
            base_url="http://bridge/api/v2/aibridge/anthropic",
        ) as client:
            seen = (await client.post("/v1/messages?beta=true", content=b"{}")).json()
    assert seen["path"] == "/api/v2/aibridge/anthropic/v1/messages"
    assert seen["query_string"] == "beta=true"


async def test_escaping_path_is_refused_before_the_app_runs() -> None:
    calls = 0

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal calls
        calls += 1
        await echo_scope(scope, receive, send)

    factory = InProcessTransportFactory(counting)
    with with_delegated_api_key_id("key-1"):
        async with client_for(factory) as client:
            with pytest.raises(PathOutsideProviderError):
                await client.get("/v1/%2e%2e/%2e%2e/anthropic/v1/messages")
    assert calls == 0


async def test_callers_request_is_not_mutated() -> None:
    transport = InProcessTransportFactory(echo_scope).transport_for("openai", Source.AGENTS)
    request = httpx.Request("GET", "http://aibridge/v1/models?limit=2", headers={"a": "b"})
    before = (str(request.url), list(request.headers.raw), dict(request.extensions))
    with with_delegated_api_key_id("key-1"):
        response = await transport.handle_async_request(request)
        await response.aread()
        await response.aclose()
    assert (str(request.url), list(request.headers.raw), dict(request.extensions)) == before
    await transport.aclose()


@pytest.mark.parametrize("key", [None, ""])
async def test_missing_delegated_key_is_refused_before_the_app(key: str | None) -> None:
    calls = 0

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal calls
        calls += 1

    factory = InProcessTransportFactory(counting)
    async with client_for(factory) as client:
        with pytest.raises(MissingDelegatedAPIKeyError, match="with_delegated_api_key_id"):
            if key is None:
                await client.get("/v1/models")
            else:
                with with_delegated_api_key_id(key):
                    await client.get("/v1/models")
    assert calls == 0


async def test_identity_inside_the_app_and_its_tasks() -> None:
    factory = InProcessTransportFactory(echo_scope)
    with with_delegated_api_key_id("key-7"):
        async with client_for(factory) as client:
            seen = (await client.get("/v1/models")).json()
    assert seen["source"] == "agents"
    assert seen["key"] == "key-7"
    assert seen["child"] == {"source": "agents", "key": "key-7"}
    assert seen["aibridge"] == {
        "provider": "openai",
        "source": "agents",
        "delegated_api_key_id": "key-7",
    }


async def test_concurrent_requests_never_see_each_others_identity() -> None:
    factory = InProcessTransportFactory(echo_scope)
    transport = factory.transport_for("openai", Source.AGENTS)
    results: dict[str, Any] = {}

    # One client for all, as a service has: a client that closes closes its transport, and
    # with it every request the transport still runs.
    async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:

        async def one(index: int) -> None:
            key = f"key-{index}"
            with with_delegated_api_key_id(key):
                response = await client.post("/echo", content=key.encode())
            results[key] = response.json()

        async with anyio.create_task_group() as group:
            for index in range(16):
                group.start_soon(one, index)
    assert len(results) == 16
    for key, seen in results.items():
        assert seen["key"] == key
        assert seen["child"]["key"] == key
        assert seen["aibridge"]["delegated_api_key_id"] == key
        assert seen["body"] == key


async def test_context_set_by_the_app_does_not_leak_back() -> None:
    factory = InProcessTransportFactory(echo_scope)
    with with_delegated_api_key_id("key-1"):
        async with client_for(factory) as client:
            await client.get("/v1/models")
    assert app_var.get() == "unset"


# -- what an ASGI app is, checked when the factory or transport is built ---------------------


@pytest.mark.parametrize(
    "build",
    [
        InProcessTransportFactory,
        StreamingASGITransport,
        StreamingASGITransport2,
        lambda app: TransportFactorySlot().register_in_memory_app(app),
    ],
    ids=["factory", "transport", "httpx2-transport", "slot"],
)
def test_an_app_class_is_refused_when_built_with_the_hint_to_instantiate_it(build: Any) -> None:
    with pytest.raises(TypeError) as caught:
        build(FakeAIBridge)
    message = str(caught.value)
    assert "an ASGI app is an async callable `app(scope, receive, send)`" in message
    assert "instantiate it: `FakeAIBridge()`" in message


@pytest.mark.parametrize("app", ["http://bridge", 42, {"app": echo_scope}])
def test_a_non_callable_app_is_refused_when_built(app: Any) -> None:
    with pytest.raises(TypeError, match="not callable: an ASGI app is an async callable"):
        InProcessTransportFactory(app)
    with pytest.raises(TypeError, match="not callable: an ASGI app is an async callable"):
        StreamingASGITransport(app)


def test_a_factory_without_an_app_is_still_allowed() -> None:
    factory = InProcessTransportFactory(None)
    with pytest.raises(BridgeNotRegisteredError):
        factory.transport_for("openai", Source.AGENTS)


class Bridge:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await echo_scope(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await echo_scope(scope, receive, send)


async def echo_with_option(scope: Scope, receive: Receive, send: Send, *, option: int) -> None:
    await echo_scope(scope, receive, send)


def wraps_echo(scope: Scope, receive: Receive, send: Send) -> Any:
    return echo_scope(scope, receive, send)


@pytest.mark.parametrize(
    "app",
    [Bridge(), Bridge().handle, functools.partial(echo_with_option, option=1), wraps_echo],
    ids=["instance", "bound-method", "partial", "sync-wrapper"],
)
async def test_every_kind_of_asgi_app_is_served(app: Any) -> None:
    factory = InProcessTransportFactory(app)
    with with_delegated_api_key_id("key-1"):
        async with client_for(factory) as client:
            response = await client.get("/v1/models")
    assert response.status_code == 200
    assert response.json()["path"] == "/api/v2/aibridge/openai/v1/models"
