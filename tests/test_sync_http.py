"""Behaviour §12 for HTTPTransportFactory: sync clients through a real uvicorn."""

from __future__ import annotations

import json
import socket
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from _uvicorn import running_server

from aibridge_transport import (
    GatewayAuthMiddleware,
    GatewayKeyMismatchError,
    HTTPTransportFactory,
    MissingDelegatedAPIKeyError,
    RedirectRefusedError,
    Source,
    delegated_api_key_id_from_context,
    source_from_context,
    with_delegated_api_key_id,
)
from aibridge_transport.types import Receive, Scope, Send

KEY = "gateway-secret-for-sync"
WAIT = 10.0


async def bridge(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    tail = scope["path"].rsplit("/", 1)[-1]
    if tail == "redirect":
        location = [(b"location", b"/x")]
        await send({"type": "http.response.start", "status": 302, "headers": location})
        await send({"type": "http.response.body", "body": b""})
        return
    if tail == "first-then-wait":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    if tail == "stall":
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if tail == "stream":
        for part in (b"one", b"two", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    report = {
        "path": scope["path"],
        "identity": [source_from_context(), delegated_api_key_id_from_context()],
        "body": body.decode(),
    }
    await send({"type": "http.response.body", "body": json.dumps(report).encode()})


@pytest.fixture(scope="module")
def bridge_url() -> Iterator[str]:
    with running_server(GatewayAuthMiddleware(bridge, KEY)) as url:
        yield url


def client(factory: HTTPTransportFactory, flavor: str) -> Any:
    transport = factory.transport_for("openai", Source.AGENTS, flavor=flavor)  # type: ignore[call-overload]
    module: Any = httpx2 if flavor == "httpx2" else httpx
    assert isinstance(transport, module.BaseTransport)
    return module.Client(transport=transport, base_url="http://api.openai.example")


@pytest.mark.parametrize("flavor", ["httpx", "httpx2"])
def test_sync_request_reaches_the_bridge_with_identity(bridge_url: str, flavor: str) -> None:
    def upload() -> Iterator[bytes]:
        yield b"a"
        yield b"b"

    with HTTPTransportFactory(bridge_url, KEY) as factory, client(factory, flavor) as http:
        with pytest.raises(MissingDelegatedAPIKeyError):
            http.get("/v1/x")
        with with_delegated_api_key_id("key-1"):
            report = http.post("/v1/echo?q=1", content=upload()).json()
            with http.stream("GET", "/v1/stream") as response:
                stream = response.stream
                first = next(iter(stream))
                rest = list(stream)  # resumes where it stopped
            with pytest.raises(RedirectRefusedError):
                http.get("/v1/redirect")
    assert report == {
        "path": "/api/v2/aibridge/openai/v1/echo",
        "identity": ["agents", "key-1"],
        "body": "ab",
    }
    assert b"".join([first, *rest]) == b"onetwothree"


@pytest.mark.parametrize("flavor", ["httpx", "httpx2"])
def test_sync_wrong_gateway_key_raises_mismatch(bridge_url: str, flavor: str) -> None:
    with HTTPTransportFactory(bridge_url, "another-key") as factory:
        with client(factory, flavor) as http, with_delegated_api_key_id("key-1"):
            with pytest.raises(GatewayKeyMismatchError):
                http.get("/v1/x")


def test_sync_failure_frames_never_hold_the_gateway_key() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    factory = HTTPTransportFactory(f"http://127.0.0.1:{port}", KEY)
    with client(factory, "httpx") as http, with_delegated_api_key_id("key-1"):
        with pytest.raises(httpx.ConnectError) as caught:
            http.get("/v1/x")
    factory.close()
    rendered = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
    )
    library_frames = [
        line for line in rendered.splitlines() if "aibridge_transport" in line and "File" in line
    ]
    assert library_frames  # the library's frames are in the rendering
    assert KEY not in rendered


@pytest.mark.parametrize("flavor", ["httpx", "httpx2"])
def test_sync_read_timeout_is_the_flavours_own(bridge_url: str, flavor: str) -> None:
    module: Any = httpx2 if flavor == "httpx2" else httpx
    with HTTPTransportFactory(bridge_url, KEY) as factory, client(factory, flavor) as http:
        with with_delegated_api_key_id("key-1"), pytest.raises(module.ReadTimeout):
            http.get("/v1/stall", timeout=module.Timeout(5.0, read=0.05))


@pytest.mark.parametrize("flavor", ["httpx", "httpx2"])
def test_sync_close_from_another_thread_ends_a_blocked_reader(bridge_url: str, flavor: str) -> None:
    module: Any = httpx2 if flavor == "httpx2" else httpx
    outcome: list[object] = []
    with HTTPTransportFactory(bridge_url, KEY) as factory, client(factory, flavor) as http:
        with with_delegated_api_key_id("key-1"), http.stream("GET", "/v1/first-then-wait") as r:
            iterator = r.iter_raw()
            assert next(iterator) == b"first"

            def read() -> None:
                try:
                    outcome.extend(iterator)
                    outcome.append("ended")
                except (module.StreamClosed, module.TransportError) as exc:
                    outcome.append(exc)

            reader = threading.Thread(target=read)
            reader.start()
            r.close()
            # Far below the bridge's own timeouts: the close ended the read, nothing else.
            reader.join(2.0)
            assert not reader.is_alive()
    assert len(outcome) == 1
