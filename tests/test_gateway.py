from __future__ import annotations

import contextlib
import logging
import traceback
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from asgi import chunk, start
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aibridge_transport import (
    AI_GATEWAY_ROOT_PATH,
    AIBRIDGE_ROOT_PATH,
    GatewayAuthMiddleware,
    InProcessTransportFactory,
    Source,
    StreamingASGITransport,
    delegated_api_key_id_from_context,
    delegated_attribution_from_context,
    source_from_context,
    with_delegated_api_key_id,
    with_delegated_attribution,
    with_source,
)
from aibridge_transport.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.anyio

KEY = "gateway-secret-1"
# The bridge answers under both mounts: every identity rule is checked under each.
MOUNTS = pytest.mark.parametrize("mount", [AI_GATEWAY_ROOT_PATH, AIBRIDGE_ROOT_PATH])
SEEN: list[dict[str, Any]] = []
ARRIVED: dict[str, anyio.Event] = {}


def identity() -> tuple[str | None, str | None]:
    return source_from_context(), delegated_api_key_id_from_context()


async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
    from_task: list[tuple[str | None, str | None]] = []
    attribution_in_task: list[uuid.UUID | None] = []
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: _append_identity(from_task))
        group.start_soon(lambda: _append_attribution(attribution_in_task))
    SEEN.append(
        {
            "scope": scope,
            "identity": identity(),
            "task_identity": from_task[0],
            "attribution": delegated_attribution_from_context(),
            "task_attribution": attribution_in_task[0],
            "aibridge": scope.get("extensions", {}).get("aibridge"),
            "headers": list(scope["headers"]),
        }
    )
    await send(start())
    await send(chunk(b"ok", more_body=False))


async def leaky(scope: Scope, receive: Receive, send: Send) -> None:
    # Never exits the block: the value must still not leak out of the middleware (behaviour §4).
    with_source("set-by-the-app").__enter__()
    await send(start())
    await send(chunk(b"ok", more_body=False))


async def _append_identity(into: list[tuple[str | None, str | None]]) -> None:
    into.append(identity())


async def _append_attribution(into: list[uuid.UUID | None]) -> None:
    into.append(delegated_attribution_from_context())


async def meet_then_report(scope: Scope, receive: Receive, send: Send) -> None:
    # Both requests are inside the app before either reads its identity.
    mine = scope["query_string"].decode()
    other = "b" if mine == "a" else "a"
    ARRIVED[mine].set()
    await ARRIVED[other].wait()
    body = repr(identity()).encode()
    await send(start())
    await send(chunk(body, more_body=False))


CANCELLED: list[tuple[str | None, str | None]] = []
CANCEL_SEEN: list[anyio.Event] = []


async def streams_forever(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start())
    await send(chunk(b"first"))
    try:
        await anyio.sleep_forever()
    finally:
        CANCELLED.append(identity())
        CANCEL_SEEN[-1].set()


def gateway_client(app: Any = recorder, key: str | list[str] = KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=StreamingASGITransport(GatewayAuthMiddleware(app, key)),
        base_url="http://bridge",
    )


IDENTITY_HEADERS = {
    "X-Coder-AI-Gateway-Key": KEY,
    "X-Coder-AI-Gateway-Delegated-Key-ID": "key-7",
    "X-Coder-AI-Gateway-Source": "agents",
}


@MOUNTS
async def test_valid_key_sets_identity_like_the_in_process_path(mount: str) -> None:
    SEEN.clear()
    async with gateway_client() as client:
        response = await client.get(
            f"{mount}/openai/v1/models",
            headers={"authorization": "Bearer sk-1", **IDENTITY_HEADERS, "x-after": "1"},
        )
    assert response.status_code == 200
    (seen,) = SEEN
    assert seen["identity"] == ("agents", "key-7")
    assert seen["task_identity"] == ("agents", "key-7")
    assert seen["aibridge"] == {
        "provider": "openai",
        "source": "agents",
        "delegated_api_key_id": "key-7",
    }
    names = [name for name, _ in seen["headers"]]
    assert not [name for name in names if name.startswith(b"x-coder-ai-gateway-")]
    assert names[-2:] == [b"authorization", b"x-after"]


@MOUNTS
async def test_other_gateway_headers_are_stripped_with_a_valid_key(mount: str) -> None:
    SEEN.clear()
    async with gateway_client() as client:
        await client.get(
            f"{mount}/openai/v1/models",
            headers={**IDENTITY_HEADERS, "X-Coder-AI-Gateway-Admin": "yes"},
        )
    assert b"x-coder-ai-gateway-admin" not in [name for name, _ in SEEN[0]["headers"]]


@pytest.mark.parametrize(
    "headers",
    [
        {**IDENTITY_HEADERS, "X-Coder-AI-Gateway-Key": "wrong"},
        {**IDENTITY_HEADERS, "X-Coder-AI-Gateway-Key": KEY + "x"},
        {"X-Coder-AI-Gateway-Delegated-Key-ID": "key-7", "X-Coder-AI-Gateway-Source": "agents"},
        {"X-Coder-AI-Gateway-Delegated-Key-ID": "key-7"},
        {"X-Coder-AI-Gateway-Key": ""},
        {"X-Coder-AI-Gateway-Workspace-ID": "0b9f4c7e-58a1-4a63-9a5e-3c1d2e4f5a6b"},
    ],
    ids=["wrong", "longer", "missing", "key-id-alone", "empty", "workspace-alone"],
)
@MOUNTS
async def test_wrong_or_missing_key_gets_401_and_the_app_is_not_called(
    headers: dict[str, str], mount: str
) -> None:
    SEEN.clear()
    async with gateway_client() as client:
        response = await client.get(f"{mount}/openai/v1/models", headers=headers)
    assert response.status_code == 401
    assert response.headers["x-coder-ai-gateway-error"] == "gateway_key_mismatch"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert SEEN == []


async def test_key_sent_twice_is_refused() -> None:
    SEEN.clear()
    headers = [(b"x-coder-ai-gateway-key", KEY.encode())] * 2
    async with gateway_client() as client:
        response = await client.get("/api/v2/aibridge/openai/v1/models", headers=headers)
    assert response.status_code == 401
    assert SEEN == []


WORKSPACE_ID = uuid.UUID("0b9f4c7e-58a1-4a63-9a5e-3c1d2e4f5a6b")


@MOUNTS
@pytest.mark.parametrize(
    "sent",
    [
        str(WORKSPACE_ID),
        str(WORKSPACE_ID).upper(),
        "{" + str(WORKSPACE_ID) + "}",
        "urn:uuid:" + str(WORKSPACE_ID),
        WORKSPACE_ID.hex,
    ],
    ids=["canonical", "upper", "braces", "urn", "bare-hex"],
)
async def test_valid_key_with_a_workspace_sets_the_attribution(mount: str, sent: str) -> None:
    # The spellings Go's uuid.Parse takes, as coder's gateway parses the header.
    SEEN.clear()
    async with gateway_client() as client:
        response = await client.get(
            f"{mount}/openai/v1/models",
            headers={**IDENTITY_HEADERS, "X-Coder-AI-Gateway-Workspace-ID": sent},
        )
    assert response.status_code == 200
    (seen,) = SEEN
    assert seen["attribution"] == seen["task_attribution"] == WORKSPACE_ID
    assert seen["aibridge"] == {
        "provider": "openai",
        "source": "agents",
        "delegated_api_key_id": "key-7",
        "workspace_id": WORKSPACE_ID,
    }
    assert not [name for name, _ in seen["headers"] if name.startswith(b"x-coder-ai-gateway-")]


@pytest.mark.parametrize("sent", ["", "00000000-0000-0000-0000-000000000000"])
async def test_an_empty_or_nil_workspace_is_no_attribution(sent: str) -> None:
    SEEN.clear()
    async with gateway_client() as client:
        response = await client.get(
            "/api/v2/ai-gateway/openai/v1/models",
            headers={**IDENTITY_HEADERS, "X-Coder-AI-Gateway-Workspace-ID": sent},
        )
    assert response.status_code == 200
    assert SEEN[0]["attribution"] is None
    assert "workspace_id" not in SEEN[0]["aibridge"]


async def test_a_workspace_without_a_delegated_key_id_gives_no_attribution() -> None:
    SEEN.clear()
    headers = {
        "X-Coder-AI-Gateway-Key": KEY,
        "X-Coder-AI-Gateway-Workspace-ID": str(WORKSPACE_ID),
    }
    async with gateway_client() as client:
        response = await client.get("/api/v2/ai-gateway/openai/v1/models", headers=headers)
    assert response.status_code == 200
    assert (SEEN[0]["identity"], SEEN[0]["attribution"], SEEN[0]["aibridge"]) == (
        (None, None),
        None,
        None,
    )


async def test_the_callers_attribution_never_reaches_the_app_through_the_middleware() -> None:
    # The middleware sets the app's identity from the headers alone: what the server's own
    # context holds is not the request's (behaviour §4).
    SEEN.clear()
    with with_delegated_attribution(WORKSPACE_ID):
        async with gateway_client() as client:
            await client.get("/api/v2/ai-gateway/openai/v1/models", headers=IDENTITY_HEADERS)
    assert SEEN[0]["attribution"] is None


async def answers_with_the_error_marker(scope: Scope, receive: Receive, send: Send) -> None:
    # A provider's own 401 that mimics the gateway's refusal.
    headers = [
        (b"X-Coder-AI-Gateway-Error", b"gateway_key_mismatch"),
        (b"content-type", b"text/plain"),
    ]
    await send(start(headers, status=401))
    await send(chunk(b"provider authentication failed", more_body=False))


@pytest.mark.parametrize("headers", [IDENTITY_HEADERS, {}], ids=["delegated", "ordinary"])
async def test_only_the_middleware_sends_the_error_marker(headers: dict[str, str]) -> None:
    async with gateway_client(answers_with_the_error_marker) as client:
        response = await client.get("/api/v2/ai-gateway/openai/v1/models", headers=headers)
    assert response.status_code == 401
    assert response.text == "provider authentication failed"
    assert "x-coder-ai-gateway-error" not in response.headers
    assert response.headers["content-type"] == "text/plain"


async def test_an_error_marker_sent_by_the_client_is_dropped_and_asks_for_nothing() -> None:
    SEEN.clear()
    async with gateway_client() as client:
        response = await client.get(
            "/api/v2/ai-gateway/openai/v1/models",
            headers={"X-Coder-AI-Gateway-Error": "gateway_key_mismatch", "accept": "*/*"},
        )
    assert response.status_code == 200
    (seen,) = SEEN
    assert [name for name, _ in seen["headers"] if name.startswith(b"x-coder")] == []
    assert (seen["identity"], seen["aibridge"]) == ((None, None), None)


async def test_refusal_log_holds_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aibridge_transport")
    async with gateway_client() as client:
        await client.get(
            "/api/v2/aibridge/openai/v1/models",
            headers={**IDENTITY_HEADERS, "X-Coder-AI-Gateway-Key": "almost-" + KEY},
        )
    assert "refused GET '/api/v2/aibridge/openai/v1/models'" in caplog.text
    assert KEY not in caplog.text
    assert "key-7" not in caplog.text


@pytest.mark.parametrize("key_id", [None, ""])
async def test_valid_key_without_delegated_key_id_gives_no_identity(key_id: str | None) -> None:
    SEEN.clear()
    headers = {"X-Coder-AI-Gateway-Key": KEY, "X-Coder-AI-Gateway-Source": "agents"}
    if key_id is not None:
        headers["X-Coder-AI-Gateway-Delegated-Key-ID"] = key_id
    async with gateway_client() as client:
        response = await client.get("/api/v2/aibridge/openai/v1/models", headers=headers)
    assert response.status_code == 200
    (seen,) = SEEN
    assert seen["identity"] == (None, None)
    assert seen["task_identity"] == (None, None)
    assert seen["aibridge"] is None
    assert not [name for name, _ in seen["headers"] if name.startswith(b"x-coder-ai-gateway-")]


WORKSPACE = b"x-coder-ai-gateway-workspace-id"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/openai/v1", [(b"x-coder-ai-gateway-delegated-key-id", b"\xff\xfe")]),
        ("/openai/v1", [(b"x-coder-ai-gateway-delegated-key-id", b"k")] * 2),
        ("/openai/v1", [(b"x-coder-ai-gateway-source", b"a\x85b")]),
        ("/openai/v1", [(WORKSPACE, b"not-a-uuid")]),
        ("/openai/v1", [(WORKSPACE, b"0b9f4c7e-58a1-4a63-9a5e-3c1d2e4f5a6")]),
        ("/openai/v1", [(WORKSPACE, b" 0b9f4c7e-58a1-4a63-9a5e-3c1d2e4f5a6b")]),
        ("/openai/v1", [(WORKSPACE, b"0b9f4c7e58a1-4a63-9a5e-3c1d2e4f-5a6b")]),
        ("/openai/v1", [(WORKSPACE, b"0b9f4c7e-58a1-4a63-9a5e-3c1d2e4f5a6b")] * 2),
        ("!/health", []),
        ("/", []),
    ],
    ids=[
        "not-utf8",
        "twice",
        "control-character",
        "workspace-not-a-uuid",
        "workspace-short",
        "workspace-space",
        "workspace-misplaced-hyphens",
        "workspace-twice",
        "outside-root",
        "no-provider",
    ],
)
@MOUNTS
async def test_malformed_identity_with_a_valid_key_gets_400(
    path: str, headers: list[tuple[bytes, bytes]], mount: str
) -> None:
    path = path[1:] if path.startswith("!") else mount + path
    SEEN.clear()
    sent = [(b"x-coder-ai-gateway-key", KEY.encode())]
    if not any(name == b"x-coder-ai-gateway-delegated-key-id" for name, _ in headers):
        sent.append((b"x-coder-ai-gateway-delegated-key-id", b"key-7"))
    async with gateway_client() as client:
        response = await client.get(path, headers=sent + headers)
    assert response.status_code == 400
    # As coder's gateway answers it: the error marker belongs to the key refusal alone.
    assert "x-coder-ai-gateway-error" not in response.headers
    assert response.text == "invalid AI Gateway delegation metadata"
    assert SEEN == []


async def test_malformed_identity_log_holds_no_header_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aibridge_transport")
    headers = [
        (b"x-coder-ai-gateway-key", KEY.encode()),
        (b"x-coder-ai-gateway-delegated-key-id", b"key-7"),
        (b"x-coder-ai-gateway-source", b"secret-source\x85"),
    ]
    async with gateway_client() as client:
        response = await client.get("/api/v2/aibridge/openai/v1/models", headers=headers)
    assert response.status_code == 400
    assert "refused GET" in caplog.text
    assert "secret-source" not in caplog.text
    assert KEY not in caplog.text


async def test_identity_never_leaks_between_concurrent_requests() -> None:
    ARRIVED.clear()
    ARRIVED.update(a=anyio.Event(), b=anyio.Event())
    results: dict[str, str] = {}
    async with gateway_client(meet_then_report) as client:

        async def call(name: str) -> None:
            response = await client.get(
                f"/api/v2/aibridge/openai/v1?{name}",
                headers={**IDENTITY_HEADERS, "X-Coder-AI-Gateway-Delegated-Key-ID": f"key-{name}"},
            )
            results[name] = response.text

        async with anyio.create_task_group() as group:
            group.start_soon(call, "a")
            group.start_soon(call, "b")
    assert results == {"a": "('agents', 'key-a')", "b": "('agents', 'key-b')"}


async def test_cancellation_reaches_the_app_through_the_middleware() -> None:
    CANCELLED.clear()
    CANCEL_SEEN.append(anyio.Event())
    transport = StreamingASGITransport(
        GatewayAuthMiddleware(streams_forever, KEY), disconnect_grace=0
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
        async with client.stream(
            "GET", "/api/v2/aibridge/openai/v1/stream", headers=IDENTITY_HEADERS
        ) as response:
            async for chunk in response.aiter_bytes():
                assert chunk == b"first"
                break
        await CANCEL_SEEN[-1].wait()
    # Cancelled inside its identity: the cancellation went through the middleware's context.
    assert CANCELLED == [("agents", "key-7")]


async def test_app_context_changes_do_not_leak_out() -> None:
    middleware = GatewayAuthMiddleware(leaky, KEY)
    scope = http_scope([(b"x-coder-ai-gateway-key", KEY.encode())])
    await middleware(scope, no_body, discard)
    assert source_from_context() is None


def http_scope(headers: list[tuple[bytes, bytes]], kind: str = "http") -> Scope:
    return {
        "type": kind,
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v2/aibridge/openai/v1/models",
        "raw_path": b"/api/v2/aibridge/openai/v1/models",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "server": ("bridge", 80),
        "client": ("127.0.0.1", 5000),
        "state": {},
    }


async def no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: Message) -> None:
    pass


async def test_request_without_aibridge_headers_passes_through_untouched() -> None:
    SEEN.clear()
    scope = http_scope([(b"accept", b"*/*")])
    await GatewayAuthMiddleware(recorder, KEY)(scope, no_body, discard)
    (seen,) = SEEN
    assert seen["scope"] is scope
    assert seen["headers"] == [(b"accept", b"*/*")]
    assert seen["identity"] == (None, None)
    assert seen["aibridge"] is None


async def test_websocket_loses_aibridge_headers_and_gets_no_identity() -> None:
    SEEN.clear()
    headers = [(b"x-coder-ai-gateway-key", KEY.encode()), (b"x-coder-ai-gateway-source", b"agents")]
    scope = http_scope([*headers, (b"origin", b"x")], kind="websocket")
    await GatewayAuthMiddleware(recorder, KEY)(scope, no_body, discard)
    (seen,) = SEEN
    assert seen["headers"] == [(b"origin", b"x")]
    assert seen["identity"] == (None, None)
    assert seen["aibridge"] is None


async def test_wrapped_app_still_works_in_process() -> None:
    # The same wrapped app can be registered in-process: its identity passes through.
    SEEN.clear()
    factory = InProcessTransportFactory(GatewayAuthMiddleware(recorder, KEY))
    with with_delegated_api_key_id("key-9"):
        async with httpx.AsyncClient(
            transport=factory.transport_for("anthropic", Source.AGENTS), base_url="http://x"
        ) as client:
            await client.get("/v1/messages")
    assert SEEN[0]["identity"] == ("agents", "key-9")
    assert SEEN[0]["aibridge"]["provider"] == "anthropic"


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    yield {"ready": True}


async def ready(request: Request) -> JSONResponse:
    return JSONResponse({"ready": request.state.ready})


lifespan_app = Starlette(routes=[Route("/api/v2/aibridge/openai/ready", ready)], lifespan=lifespan)


async def test_lifespan_passes_through() -> None:
    async with InProcessTransportFactory(GatewayAuthMiddleware(lifespan_app, KEY)) as factory:
        with with_delegated_api_key_id("key-1"):
            async with httpx.AsyncClient(
                transport=factory.transport_for("openai", Source.AGENTS), base_url="http://x"
            ) as client:
                response = await client.get("/ready")
    assert response.json() == {"ready": True}


@pytest.mark.parametrize("key", ["", [], ["good-key", ""]])
def test_empty_gateway_key_is_refused_at_construction(key: str | list[str]) -> None:
    with pytest.raises(ValueError, match="gateway_key must not be empty"):
        GatewayAuthMiddleware(recorder, key)


@pytest.mark.parametrize(("sent", "status"), [("old-key", 200), ("new-key", 200), ("x", 401)])
async def test_several_keys_are_accepted_during_a_rotation(sent: str, status: int) -> None:
    SEEN.clear()
    async with gateway_client(key=["new-key", "old-key"]) as client:
        response = await client.get(
            "/api/v2/aibridge/openai/v1/models",
            headers={**IDENTITY_HEADERS, "X-Coder-AI-Gateway-Key": sent},
        )
    assert response.status_code == status
    assert [seen["identity"] for seen in SEEN] == ([("agents", "key-7")] if status == 200 else [])


def test_gateway_key_with_a_newline_is_refused_without_quoting_it() -> None:
    with pytest.raises(ValueError, match="control characters") as caught:
        GatewayAuthMiddleware(recorder, "s3cr3t\n")
    assert "s3cr3t" not in str(caught.value)


def test_repr_hides_the_key() -> None:
    assert KEY not in repr(GatewayAuthMiddleware(recorder, KEY))


@pytest.mark.parametrize("sent", ["new-key", "old-key", "wrong-key", "new-ke"])
async def test_every_key_is_compared_in_constant_time(
    sent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A spy around the real comparison: every configured key is compared with
    # hmac.compare_digest, whichever matches, so timing tells nothing about the key.
    import hmac

    compared: list[tuple[bytes, bytes]] = []
    real_compare = hmac.compare_digest

    def spy(sent_key: bytes, key: bytes) -> bool:
        compared.append((sent_key, key))
        return real_compare(sent_key, key)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    async with gateway_client(key=["new-key", "old-key"]) as client:
        response = await client.get(
            "/api/v2/aibridge/openai/v1/models",
            headers={**IDENTITY_HEADERS, "X-Coder-AI-Gateway-Key": sent},
        )
    assert response.status_code == (200 if sent in ("new-key", "old-key") else 401)
    assert compared == [(sent.encode(), b"new-key"), (sent.encode(), b"old-key")]


async def raises(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("the bridge failed")


@pytest.mark.parametrize("key_id", [b"key-7", b""])
async def test_no_middleware_frame_holds_the_gateway_key_when_the_app_raises(key_id: bytes) -> None:
    # What Sentry's locals capture would print of the middleware's frames (behaviour §11).
    middleware = GatewayAuthMiddleware(raises, KEY)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v2/aibridge/openai/v1/models",
        "root_path": "",
        "headers": [
            (b"x-coder-ai-gateway-key", KEY.encode()),
            (b"x-coder-ai-gateway-delegated-key-id", key_id),
            (b"x-coder-ai-gateway-source", b"agents"),
        ],
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    with pytest.raises(RuntimeError, match="the bridge failed") as caught:
        await middleware(scope, receive, send)
    frames = [
        frame
        for frame, _ in traceback.walk_tb(caught.value.__traceback__)
        if "aibridge_transport" in frame.f_code.co_filename
    ]
    assert frames, "the middleware's frames are in the traceback"
    for frame in frames:
        assert KEY not in repr(frame.f_locals), frame.f_code.co_name


def test_the_middleware_keeps_its_keys_out_of_sight() -> None:
    middleware = GatewayAuthMiddleware(recorder, [KEY, "gateway-secret-2"])
    for shown in (middleware, vars(middleware)):
        assert KEY not in repr(shown)
        assert "gateway-secret-2" not in repr(shown)
