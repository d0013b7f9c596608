"""`HTTPTransportFactory` against a stand-in for coder/coder's standalone AI Gateway.

The stand-in is written from coder's gateway (`coderd/aibridge/delegation.go` and the
delegation middleware beside it), not from this library: it reads exactly the headers coder
reads, with coder's rules, and answers as coder answers. Nothing of `GatewayAuthMiddleware`
is used, so a header this library misspells, duplicates or leaves out fails here even where
our own middleware would agree with it (behaviour §11).
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from _uvicorn import running_server

from aibridge_transport import (
    AI_GATEWAY_ROOT_PATH,
    GatewayKeyMismatchError,
    HTTPTransportFactory,
    Source,
    with_delegated_api_key_id,
    with_delegated_attribution,
)
from aibridge_transport.types import Receive, Scope, Send

KEY = "coder-gateway-shared-key"
WORKSPACE_ID = uuid.UUID("0d7e5c3a-9b1f-4a26-8c4d-2e3f4a5b6c7d")

# coder's names, as its gateway reads them (Go canonicalises them; ASGI lower-cases them).
GATEWAY_KEY = b"x-coder-ai-gateway-key"
DELEGATED_KEY_ID = b"x-coder-ai-gateway-delegated-key-id"
SOURCE = b"x-coder-ai-gateway-source"
WORKSPACE = b"x-coder-ai-gateway-workspace-id"
ERROR = b"x-coder-ai-gateway-error"
DELEGATION_HEADERS = (GATEWAY_KEY, DELEGATED_KEY_ID, SOURCE, WORKSPACE)
# The spellings Go's uuid.Parse takes.
GO_UUID = re.compile(
    r"(?:urn:uuid:|\{)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}?"
    r"|[0-9a-f]{32}",
    re.IGNORECASE,
)
# What the stand-in saw of each request, by the `x-probe` header.
SEEN: dict[str, dict[str, Any]] = {}
REQUESTS: list[str] = []


async def _answer(send: Send, status: int, body: bytes, headers: list[Any] | None = None) -> None:
    start = {"type": "http.response.start", "status": status, "headers": headers or []}
    await send(start)
    await send({"type": "http.response.body", "body": body})


async def coder_gateway(scope: Scope, receive: Receive, send: Send) -> None:
    """coder's delegation rules, then a report of what reached "provider dispatch"."""
    if scope["type"] != "http":
        return
    values: dict[bytes, list[bytes]] = {name: [] for name in DELEGATION_HEADERS}
    other: list[tuple[str, str]] = []
    for name, value in scope["headers"]:
        if name in values:
            values[name].append(value)
        elif name != ERROR:  # dropped from every request
            other.append((name.decode(), value.decode()))
    probe = dict(other).get("x-probe", "")
    REQUESTS.append(probe)
    if not any(values.values()):
        await _answer(send, 200, b"ordinary client")
        return
    keys = values[GATEWAY_KEY]
    if len(keys) != 1 or not hmac.compare_digest(keys[0], KEY.encode()):
        marker = [(b"X-Coder-AI-Gateway-Error", b"gateway_key_mismatch")]
        await _answer(send, 401, b"AI Gateway authentication failed", marker)
        return
    key_ids, sources, workspaces = values[DELEGATED_KEY_ID], values[SOURCE], values[WORKSPACE]
    key_id = key_ids[0].decode() if key_ids else ""
    source = sources[0].decode() if sources else ""
    if (
        len(key_ids) != 1
        or len(sources) != 1
        or len(workspaces) > 1
        or not key_id
        or key_id != key_id.strip()
        or not source
        or source != source.strip()
    ):
        await _answer(send, 400, b"invalid AI Gateway delegation metadata")
        return
    workspace = workspaces[0].decode() if workspaces else ""
    if workspace and not GO_UUID.fullmatch(workspace):
        await _answer(send, 400, b"invalid AI Gateway workspace attribution")
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    SEEN[probe] = {
        "raw_path": scope["raw_path"].decode(),
        "query": scope["query_string"].decode(),
        "key_id": key_id,
        "source": source,
        "workspace": workspace,
        "headers_sent": [name.decode() for name, sent in values.items() if sent],
        "other_headers": other,
        "body": body.decode(),
    }
    if probe.startswith("provider-401"):
        # A provider's own 401, even one that mimics the marker, is no key refusal; coder's
        # gateway strips the marker from it (only its middleware may send one).
        await _answer(send, 401, b"provider authentication failed")
        return
    await _answer(send, 200, json.dumps(SEEN[probe]).encode())


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    with running_server(coder_gateway) as url:
        yield url


def module_of(flavour: str) -> Any:
    return httpx if flavour == "httpx" else httpx2


def request_headers(probe: str) -> dict[str, str]:
    return {"authorization": "Bearer byok", "x-probe": probe}


async def post_async(factory: HTTPTransportFactory, flavour: str, probe: str) -> Any:
    module = module_of(flavour)
    transport = factory.transport_for("openai", Source.AGENTS, flavor=flavour)  # type: ignore[call-overload]
    async with module.AsyncClient(transport=transport, base_url="http://upstream") as client:
        return await client.post(
            "/v1/a%2Fb?stream=true", content=b"request", headers=request_headers(probe)
        )


def post_sync(factory: HTTPTransportFactory, flavour: str, probe: str) -> Any:
    module = module_of(flavour)
    transport = factory.transport_for("openai", Source.AGENTS, flavor=flavour)  # type: ignore[call-overload]
    with module.Client(transport=transport, base_url="http://upstream") as client:
        return client.post(
            "/v1/a%2Fb?stream=true", content=b"request", headers=request_headers(probe)
        )


def expected(probe: str, workspace: str, base_path: str = "") -> dict[str, Any]:
    sent = ["x-coder-ai-gateway-key", "x-coder-ai-gateway-delegated-key-id"]
    sent += ["x-coder-ai-gateway-source"] + (["x-coder-ai-gateway-workspace-id"] * bool(workspace))
    return {
        "raw_path": f"{base_path}/api/v2/ai-gateway/openai/v1/a%2Fb",
        "query": "stream=true",
        "key_id": "synthetic-key",
        "source": "agents",
        "workspace": workspace,
        "headers_sent": sent,
        "other_headers": [
            ("host", "<host>"),
            ("authorization", "Bearer byok"),
            ("x-probe", probe),
        ],
        "body": "request",
    }


def normalised(seen: dict[str, Any]) -> dict[str, Any]:
    # The host is the gateway's address; the framing headers are the client library's.
    framing = {"accept", "accept-encoding", "connection", "user-agent", "content-length"}
    seen["other_headers"] = [
        (name, "<host>" if name == "host" else value)
        for name, value in seen["other_headers"]
        if name not in framing
    ]
    return seen


FLAVOURS = pytest.mark.parametrize("flavour", ["httpx", "httpx2"])
ATTRIBUTION = pytest.mark.parametrize(
    "workspace_id", [WORKSPACE_ID, None], ids=["attributed", "unattributed"]
)


@pytest.mark.anyio
@FLAVOURS
@ATTRIBUTION
async def test_async_requests_carry_exactly_coders_headers(
    gateway_url: str, flavour: str, workspace_id: uuid.UUID | None
) -> None:
    probe = uuid.uuid4().hex
    async with HTTPTransportFactory(gateway_url, KEY, root_path=AI_GATEWAY_ROOT_PATH) as factory:
        with with_delegated_api_key_id("synthetic-key"):
            if workspace_id is None:
                response = await post_async(factory, flavour, probe)
            else:
                with with_delegated_attribution(workspace_id):
                    response = await post_async(factory, flavour, probe)
    assert response.status_code == 200, response.text
    workspace = str(workspace_id) if workspace_id is not None else ""
    assert normalised(response.json()) == expected(probe, workspace)


@FLAVOURS
@ATTRIBUTION
def test_sync_requests_carry_exactly_coders_headers(
    gateway_url: str, flavour: str, workspace_id: uuid.UUID | None
) -> None:
    probe = uuid.uuid4().hex
    with HTTPTransportFactory(gateway_url, KEY, root_path=AI_GATEWAY_ROOT_PATH) as factory:
        with with_delegated_api_key_id("synthetic-key"):
            if workspace_id is None:
                response = post_sync(factory, flavour, probe)
            else:
                with with_delegated_attribution(workspace_id):
                    response = post_sync(factory, flavour, probe)
    assert response.status_code == 200, response.text
    workspace = str(workspace_id) if workspace_id is not None else ""
    assert normalised(response.json()) == expected(probe, workspace)


@pytest.mark.anyio
async def test_a_base_url_prefix_comes_before_the_mount(gateway_url: str) -> None:
    # coder's own test: the gateway behind `/prefix` gets `/prefix/api/v2/ai-gateway/...`.
    probe = uuid.uuid4().hex
    async with HTTPTransportFactory(
        gateway_url + "/prefix", KEY, root_path=AI_GATEWAY_ROOT_PATH
    ) as factory:
        with with_delegated_api_key_id("synthetic-key"):
            with with_delegated_attribution(WORKSPACE_ID):
                response = await post_async(factory, "httpx", probe)
    assert response.status_code == 200
    assert normalised(response.json()) == expected(probe, str(WORKSPACE_ID), "/prefix")


@pytest.mark.anyio
@FLAVOURS
async def test_coders_key_refusal_is_a_gateway_key_mismatch_sent_once(
    gateway_url: str, flavour: str
) -> None:
    probe = uuid.uuid4().hex
    async with HTTPTransportFactory(
        gateway_url, "not-the-key", root_path=AI_GATEWAY_ROOT_PATH
    ) as factory:
        with with_delegated_api_key_id("synthetic-key"):
            with pytest.raises(GatewayKeyMismatchError):
                await post_async(factory, flavour, probe)
    assert REQUESTS.count(probe) == 1
    assert probe not in SEEN


@pytest.mark.anyio
async def test_a_providers_own_401_reaches_the_caller_as_a_response(gateway_url: str) -> None:
    probe = "provider-401-" + uuid.uuid4().hex
    async with HTTPTransportFactory(gateway_url, KEY, root_path=AI_GATEWAY_ROOT_PATH) as factory:
        with with_delegated_api_key_id("synthetic-key"):
            response = await post_async(factory, "httpx", probe)
    assert response.status_code == 401
    assert response.text == "provider authentication failed"
    assert REQUESTS.count(probe) == 1
