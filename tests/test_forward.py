"""`ForwardingApp`: the bridge that sends each request on to a provider, over a real socket."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import httpx2
import pytest
from _uvicorn import running_server

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import FakeAIBridge, ForwardingApp, Reply, TokenGate

BODY: Any = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _forwarding(url: str) -> ForwardingApp:
    return ForwardingApp({"openai": f"{url}/api/v2/aibridge/openai"})


async def _post(app: ForwardingApp, path: str, **options: Any) -> httpx2.Response:
    async with InProcessTransportFactory(app) as factory:
        with with_delegated_api_key_id("key-1"):
            transport = factory.transport_for(path.split("/")[0], Source.AGENTS, flavor="httpx2")
            async with httpx2.AsyncClient(transport=transport) as client:
                response = await client.post(
                    "http://aibridge/" + path.partition("/")[2], json=BODY, **options
                )
                await response.aread()
                return response


async def test_it_forwards_with_the_callers_key_and_never_the_gateways_headers(
    anyio_backend: str,
) -> None:
    upstream = FakeAIBridge(default=Reply("forwarded"))
    headers = {
        "authorization": "Bearer sk-caller",
        "x-coder-ai-gateway-key": "gateway",
        "x-aibridge-source": "agents",
        "accept-encoding": "gzip",
    }
    with running_server(upstream) as url:
        response = await _post(_forwarding(url), "openai/v1/chat/completions?x=1", headers=headers)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "forwarded"
    seen = upstream.last_request
    assert seen.path == "/api/v2/aibridge/openai/v1/chat/completions"
    assert seen.query == "x=1"
    assert seen.headers["authorization"] == "Bearer [redacted]"  # it arrived; the fake redacts
    assert seen.headers["accept-encoding"] == "identity"  # readable cassettes
    assert not [name for name in seen.headers if name.startswith(("x-coder-", "x-aibridge-"))]


async def test_an_unknown_provider_is_a_404_and_a_dead_upstream_a_502(anyio_backend: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    app = ForwardingApp({"openai": f"http://127.0.0.1:{port}"})
    unknown = await _post(app, "anthropic/v1/messages")
    assert unknown.status_code == 404
    assert "no upstream for provider 'anthropic'" in unknown.json()["error"]["message"]
    dead = await _post(app, "openai/v1/chat/completions")
    assert dead.status_code == 502
    await app.aclose()


async def test_a_client_that_leaves_ends_the_upstream_request(anyio_backend: str) -> None:
    gate = TokenGate()
    upstream = FakeAIBridge(default=Reply("one two three", gate=gate))
    with running_server(upstream) as url:
        # A grace longer than the wait below: the transport's cancel cannot end the upstream
        # request in time, only the forwarding app's own reaction to the disconnect.
        async with InProcessTransportFactory(_forwarding(url), disconnect_grace=30) as factory:
            with with_delegated_api_key_id("key-1"):
                transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
                client = httpx2.AsyncClient(transport=transport)
                async with client.stream(
                    "POST", "http://aibridge/v1/chat/completions", json={**BODY, "stream": True}
                ) as response:
                    gate.release()
                    async for chunk in response.aiter_bytes():
                        if b'"one"' in chunk:
                            break
                # Before the client's own close, which would cancel the app (behaviour §6).
                with anyio.fail_after(5):
                    outcome = await upstream.last_request.wait_ended()
                await client.aclose()
    assert outcome == "disconnected"
    assert upstream.last_request.tokens_sent == 1


def test_it_refuses_nothing_at_construction() -> None:
    # The defaults point at the real providers; nothing is sent until a request comes.
    assert ForwardingApp().upstreams == {
        "openai": "https://api.openai.com",
        "anthropic": "https://api.anthropic.com",
    }


@pytest.mark.parametrize("provider", ["openai"])
def test_a_sync_client_is_forwarded_too(provider: str) -> None:
    upstream = FakeAIBridge(default=Reply("sync"))
    with running_server(upstream) as url, InProcessTransportFactory(_forwarding(url)) as factory:
        with with_delegated_api_key_id("key-1"):
            transport = factory.transport_for(provider, Source.AGENTS, flavor="httpx2")
            with httpx2.Client(transport=transport) as client:
                response = client.post("http://aibridge/v1/chat/completions", json=BODY)
    assert response.json()["choices"][0]["message"]["content"] == "sync"
