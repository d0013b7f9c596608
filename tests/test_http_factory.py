from __future__ import annotations

import json
import socket
import struct
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anthropic
import anyio
import anyio.abc
import httpx
import httpx2
import openai
import pytest
from _uvicorn import running_server
from asgi import ThreadGates, chunk, read_body, start, wait_for_disconnect
from starlette.applications import Starlette
from starlette.routing import Mount

from aibridge_transport import (
    AI_GATEWAY_ROOT_PATH,
    AIBRIDGE_ROOT_PATH,
    GatewayAuthMiddleware,
    GatewayKeyMismatchError,
    HTTPTransportFactory,
    MissingDelegatedAPIKeyError,
    PathOutsideProviderError,
    RedirectRefusedError,
    Source,
    delegated_api_key_id_from_context,
    delegated_attribution_from_context,
    source_from_context,
    with_delegated_api_key_id,
)
from aibridge_transport.testing import FakeAIBridge, Reply
from aibridge_transport.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio

KEY = "gateway-secret-for-tests"
ROOT = "/api/v2/aibridge/openai"
MOUNTS = pytest.mark.parametrize("mount", [AIBRIDGE_ROOT_PATH, AI_GATEWAY_ROOT_PATH])
# Cross-thread signals between the test (its own loop) and the app (uvicorn's loop).
NOTES: dict[str, Any] = {}
CALLS: list[str] = []


gate = ThreadGates()
wait_for = gate.wait_for


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = await read_body(receive)
    from_task: list[Any] = []
    async with anyio.create_task_group() as group:
        group.start_soon(_identity_into, from_task)
    report = {
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode(),
        "query": scope["query_string"].decode(),
        "headers": [[name.decode(), value.decode("utf-8")] for name, value in scope["headers"]],
        "aibridge": scope.get("extensions", {}).get("aibridge"),
        "identity": [source_from_context(), delegated_api_key_id_from_context()],
        "attribution": str(delegated_attribution_from_context()),
        "task_identity": from_task[0],
        "body": body.decode(),
    }
    payload = json.dumps(report).encode()
    await send(start([(b"content-type", b"application/json")]))
    await send(chunk(payload, more_body=False))


async def _identity_into(into: list[Any]) -> None:
    into.append([source_from_context(), delegated_api_key_id_from_context()])


async def lockstep(scope: Scope, receive: Receive, send: Send) -> None:
    name = scope["query_string"].decode()
    await send(start([(b"content-type", b"text/event-stream")]))
    await send(chunk(b"data: one\n\n"))
    # The second chunk is produced only after the test has read the first one.
    await wait_for(f"{name}/read-one")
    await send(chunk(b"data: two\n\n", more_body=False))


async def hold(scope: Scope, receive: Receive, send: Send) -> None:
    name = scope["query_string"].decode()
    await send(start())
    await send(chunk(b"first"))
    await wait_for_disconnect(receive)
    NOTES[name] = "disconnected"
    gate(f"{name}/disconnected").set()


async def waits(scope: Scope, receive: Receive, send: Send) -> None:
    name = scope["query_string"].decode()
    gate(f"{name}/entered").set()
    await wait_for_disconnect(receive)
    gate(f"{name}/disconnected").set()


async def stall(scope: Scope, receive: Receive, send: Send) -> None:
    name = scope["query_string"].decode()
    await wait_for(f"{name}/release")
    await send(start())
    await send(chunk(b"late", more_body=False))


async def redirect(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start([(b"location", b"http://elsewhere.example/steal")], status=307))
    await send(chunk(b"go away", more_body=False))


async def not_modified(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start(status=304))
    await send(chunk(b"", more_body=False))


ROUTES = {
    "echo": echo,
    "lockstep": lockstep,
    "hold": hold,
    "stall": stall,
    "waits": waits,
    "redirect": redirect,
    "not-modified": not_modified,
}


async def bridge(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    CALLS.append(f"{scope['path']}?{scope['query_string'].decode()}")
    tail = scope["path"].rsplit("/", 1)[-1]
    await ROUTES.get(tail, echo)(scope, receive, send)


@pytest.fixture(scope="module")
def bridge_url() -> Iterator[str]:
    with running_server(GatewayAuthMiddleware(bridge, KEY)) as url:
        yield url


@pytest.fixture
async def factory(bridge_url: str) -> AsyncIterator[HTTPTransportFactory]:
    async with HTTPTransportFactory(bridge_url, KEY) as factory:
        yield factory


def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def client(factory: HTTPTransportFactory, flavor: str = "httpx") -> Any:
    transport = factory.transport_for("openai", Source.AGENTS, flavor=flavor)  # type: ignore[call-overload]
    module: Any = httpx if flavor == "httpx" else httpx2
    return module.AsyncClient(transport=transport, base_url="http://api.openai.example")


def unique() -> str:
    return uuid.uuid4().hex


@pytest.mark.parametrize("flavor", ["httpx", "httpx2"])
async def test_request_reaches_the_bridge_with_path_query_and_identity(
    factory: HTTPTransportFactory, flavor: str
) -> None:
    with with_delegated_api_key_id("key-1"):
        async with client(factory, flavor) as http:
            response = await http.post(
                "/v1/chat/echo?stream=true",
                content=b"hello",
                headers={"authorization": "Bearer sk-test", "x-custom": "1"},
            )
    assert response.status_code == 200
    seen = response.json()
    assert seen["path"] == f"{ROOT}/v1/chat/echo"
    assert seen["raw_path"] == f"{ROOT}/v1/chat/echo"
    assert seen["query"] == "stream=true"
    assert seen["body"] == "hello"
    assert seen["aibridge"] == {
        "provider": "openai",
        "source": "agents",
        "delegated_api_key_id": "key-1",
    }
    assert seen["identity"] == ["agents", "key-1"]
    assert seen["task_identity"] == ["agents", "key-1"]
    headers = dict(seen["headers"])
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["x-custom"] == "1"
    assert headers["host"] == factory.base_url.removeprefix("http://")
    assert not [name for name in headers if name.startswith("x-coder-ai-gateway-")]


@MOUNTS
async def test_callers_own_gateway_headers_are_never_trusted(bridge_url: str, mount: str) -> None:
    forged = {
        "X-Coder-AI-Gateway-Delegated-Key-ID": "someone-else",
        "X-Coder-AI-Gateway-Source": "forged",
        "X-Coder-AI-Gateway-Key": "guess",
        "X-Coder-AI-Gateway-Workspace-ID": str(uuid.uuid4()),
        "X-Coder-AI-Gateway-Error": "gateway_key_mismatch",
    }
    async with HTTPTransportFactory(bridge_url, KEY, root_path=mount) as factory:
        with with_delegated_api_key_id("key-1"):
            async with client(factory) as http:
                response = await http.get("/v1/echo", headers=forged)
    seen = response.json()
    assert seen["path"] == f"{mount}/openai/v1/echo"
    assert seen["identity"] == ["agents", "key-1"]
    assert seen["attribution"] == "None"


@MOUNTS
@pytest.mark.parametrize(
    "path", ["/v1/%2e%2e/%2e%2e/admin", "/v1%2f..%2f..%2fadmin", "/api/v2/ai-gateway/openai/%2e%2e"]
)
async def test_hostile_paths_are_refused_before_sending_under_both_mounts(
    mount: str, path: str
) -> None:
    async with HTTPTransportFactory(closed_url(), KEY, root_path=mount) as factory:
        with with_delegated_api_key_id("key-1"):
            async with client(factory) as http:
                with pytest.raises(PathOutsideProviderError, match=f"under {mount}/openai/"):
                    await http.get(path)


@pytest.mark.parametrize(
    ("suffix", "mount"),
    [
        ("/api/v2/ai-gateway", AI_GATEWAY_ROOT_PATH),
        ("/api/v2/ai-gateway/", AI_GATEWAY_ROOT_PATH),
        ("/api/v2/aibridge", AIBRIDGE_ROOT_PATH),
    ],
)
async def test_a_base_url_holding_a_mount_is_not_prefixed_twice(
    bridge_url: str, suffix: str, mount: str
) -> None:
    async with HTTPTransportFactory(bridge_url + suffix, KEY) as factory:
        assert factory.root_path == mount
        with with_delegated_api_key_id("key-1"):
            async with client(factory) as http:
                response = await http.get("/v1/echo")
    assert response.json()["path"] == f"{mount}/openai/v1/echo"


def test_a_base_url_mount_and_another_root_path_are_refused() -> None:
    with pytest.raises(ValueError, match="ends with the mount '/api/v2/ai-gateway'"):
        HTTPTransportFactory("http://bridge/api/v2/ai-gateway", KEY, root_path=AIBRIDGE_ROOT_PATH)


async def test_callers_request_is_never_mutated(factory: HTTPTransportFactory) -> None:
    with with_delegated_api_key_id("key-1"):
        async with client(factory) as http:
            request = http.build_request("POST", "/v1/echo?x=1", content=b"abc")
            url, headers = request.url, list(request.headers.raw)
            extensions = dict(request.extensions)
            response = await http.send(request)
    assert response.status_code == 200
    assert request.url == url
    assert request.headers.raw == headers
    assert request.extensions == extensions


async def test_already_prefixed_and_dotted_paths_follow_the_in_process_rules(
    factory: HTTPTransportFactory,
) -> None:
    with with_delegated_api_key_id("key-1"):
        async with client(factory) as http:
            prefixed = await http.get(f"{ROOT}/v1/echo")
            dotted = await http.get("/v1/a/%2e%2e/echo/")
    assert prefixed.json()["path"] == f"{ROOT}/v1/echo"
    assert dotted.json()["path"] == f"{ROOT}/v1/echo/"


async def test_path_outside_the_provider_is_refused_before_sending() -> None:
    async with HTTPTransportFactory(closed_url(), KEY) as factory:
        with with_delegated_api_key_id("key-1"):
            async with client(factory) as http:
                with pytest.raises(PathOutsideProviderError):
                    await http.get("/v1/%2e%2e/%2e%2e/admin")


@pytest.mark.parametrize("key_id", [None, ""])
async def test_missing_delegated_key_is_refused_before_anything_is_sent(
    key_id: str | None,
) -> None:
    # A closed port: had anything been sent, ConnectError would come instead.
    async with HTTPTransportFactory(closed_url(), KEY) as factory:
        async with client(factory) as http:
            with pytest.raises(MissingDelegatedAPIKeyError, match="with_delegated_api_key_id"):
                if key_id is None:
                    await http.get("/v1/echo")
                else:
                    with with_delegated_api_key_id(key_id):
                        await http.get("/v1/echo")


@pytest.mark.parametrize("flavor", ["httpx", "httpx2"])
async def test_unreachable_bridge_raises_the_clients_connect_error(flavor: str) -> None:
    async with HTTPTransportFactory(closed_url(), KEY) as factory:
        with with_delegated_api_key_id("key-1"):
            async with client(factory, flavor) as http:
                expected = httpx.ConnectError if flavor == "httpx" else httpx2.ConnectError
                with pytest.raises(expected):
                    await http.get("/v1/echo")


async def test_wrong_gateway_key_raises_mismatch_and_the_app_is_not_called(
    bridge_url: str,
) -> None:
    name = unique()
    async with HTTPTransportFactory(bridge_url, "not-the-key") as factory:
        with with_delegated_api_key_id("key-1"):
            async with client(factory) as http:
                with pytest.raises(GatewayKeyMismatchError) as caught:
                    await http.get(f"/v1/echo?{name}")
    assert "not-the-key" not in str(caught.value)
    assert not [call for call in CALLS if call.endswith(name)]


async def test_redirect_is_refused_and_its_response_closed(bridge_url: str) -> None:
    # One connection only: had the refused response not been closed, the next request
    # would wait for the pool and time out.
    async with HTTPTransportFactory(bridge_url, KEY, max_connections=1) as factory:
        with with_delegated_api_key_id("key-1"):
            async with client(factory) as http:
                with pytest.raises(RedirectRefusedError) as caught:
                    await http.get("/v1/redirect")
                after = await http.get("/v1/echo", timeout=httpx.Timeout(10, pool=2))
    assert caught.value.status_code == 307
    assert caught.value.location == "http://elsewhere.example/steal"
    assert after.status_code == 200


async def test_not_modified_is_not_a_redirect(factory: HTTPTransportFactory) -> None:
    with with_delegated_api_key_id("key-1"):
        async with client(factory) as http:
            response = await http.get("/v1/not-modified")
    assert response.status_code == 304


@pytest.mark.parametrize("flavor", ["httpx", "httpx2"])
async def test_body_streams_chunk_by_chunk(factory: HTTPTransportFactory, flavor: str) -> None:
    name = unique()
    chunks = []
    with with_delegated_api_key_id("key-1"):
        async with client(factory, flavor) as http:
            async with http.stream("GET", f"/v1/lockstep?{name}") as response:
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk)
                    if chunk == b"data: one\n\n":
                        gate(f"{name}/read-one").set()
    assert chunks == [b"data: one\n\n", b"data: two\n\n"]


async def test_early_close_disconnects_the_app(factory: HTTPTransportFactory) -> None:
    name = unique()
    with with_delegated_api_key_id("key-1"):
        async with client(factory) as http:
            async with http.stream("GET", f"/v1/hold?{name}") as response:
                async for chunk in response.aiter_bytes():
                    assert chunk == b"first"
                    break
    await wait_for(f"{name}/disconnected")
    assert NOTES[name] == "disconnected"


async def test_cancelled_caller_disconnects_the_app(factory: HTTPTransportFactory) -> None:
    name = unique()
    with with_delegated_api_key_id("key-1"):
        async with client(factory) as http:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as group:
                    group.start_soon(http.get, f"/v1/waits?{name}")
                    await wait_for(f"{name}/entered")
                    scope.cancel()
    assert scope.cancelled_caught
    await wait_for(f"{name}/disconnected")


async def test_request_body_streams_to_the_bridge(factory: HTTPTransportFactory) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one ", b"two ", b"three"):
            yield part

    with with_delegated_api_key_id("key-1"):
        async with client(factory) as http:
            response = await http.post("/v1/echo", content=parts())
    assert response.json()["body"] == "one two three"


async def test_closing_the_transport_closes_its_open_responses(
    factory: HTTPTransportFactory,
) -> None:
    name = unique()
    transport: Any = factory.transport_for("openai", Source.AGENTS)  # its internals are read
    request = httpx.Request("GET", f"http://x/v1/hold?{name}")
    with with_delegated_api_key_id("key-1"):
        response = await transport.handle_async_request(request)
    body = response.stream
    assert await body.__anext__() == b"first"
    await httpx.AsyncClient(transport=transport).aclose()
    await wait_for(f"{name}/disconnected")
    with pytest.raises(httpx.StreamClosed):
        await body.__anext__()


async def test_closing_the_factory_closes_open_responses_and_its_pools(bridge_url: str) -> None:
    name = unique()
    factory = HTTPTransportFactory(bridge_url, KEY)
    transport: Any = factory.transport_for("openai", Source.AGENTS)  # its internals are read
    request = httpx.Request("GET", f"http://x/v1/hold?{name}")
    with with_delegated_api_key_id("key-1"):
        response = await transport.handle_async_request(request)
    assert await response.stream.__anext__() == b"first"
    pool = transport._target.pool
    await factory.aclose()
    await wait_for(f"{name}/disconnected")
    with pytest.raises(httpx.StreamClosed):
        await response.stream.__anext__()
    assert pool._pool.connections == []
    # A transport asked for afterwards gets a new pool.
    later: Any = factory.transport_for("openai", Source.AGENTS)
    assert later._target.pool is not pool
    await factory.aclose()


@pytest.mark.parametrize("flavor", ["httpx", "httpx2"])
async def test_read_timeout_is_the_clients_own(factory: HTTPTransportFactory, flavor: str) -> None:
    name = unique()
    module: Any = httpx if flavor == "httpx" else httpx2
    try:
        with with_delegated_api_key_id("key-1"):
            async with client(factory, flavor) as http:
                with pytest.raises(module.ReadTimeout):
                    await http.get(f"/v1/stall?{name}", timeout=module.Timeout(10, read=0.1))
    finally:
        gate(f"{name}/release").set()


async def test_concurrent_requests_keep_their_own_identity(
    factory: HTTPTransportFactory,
) -> None:
    seen: dict[int, list[str]] = {}

    async def call(http: httpx.AsyncClient, number: int) -> None:
        with with_delegated_api_key_id(f"key-{number}"):
            response = await http.get("/v1/echo")
        seen[number] = response.json()["identity"]

    async with client(factory) as http:
        async with anyio.create_task_group() as group:
            for number in range(16):
                group.start_soon(call, http, number)
    assert seen == {number: ["agents", f"key-{number}"] for number in range(16)}


async def test_base_url_path_prefix_is_kept() -> None:
    # The bridge mounted under /svc of a bigger app: the middleware routes after root_path.
    mounted = Starlette(routes=[Mount("/svc", app=GatewayAuthMiddleware(bridge, KEY))])
    with running_server(mounted) as url:
        async with HTTPTransportFactory(url + "/svc/", KEY) as factory:
            with with_delegated_api_key_id("key-1"):
                async with client(factory) as http:
                    response = await http.get("/v1/echo")
    seen = response.json()
    assert seen["path"] == f"/svc{ROOT}/v1/echo"
    assert seen["aibridge"]["provider"] == "openai"


def test_httpx2_transport_holds_no_httpx_class() -> None:
    factory = HTTPTransportFactory("http://127.0.0.1:9", KEY)
    transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
    assert isinstance(transport, httpx2.AsyncBaseTransport)
    assert not [cls for cls in type(transport).__mro__ if cls.__module__.startswith("httpx.")]
    assert isinstance(factory.transport_for("openai", "agents"), httpx.AsyncBaseTransport)


def test_transports_of_one_flavour_share_one_pool() -> None:
    factory = HTTPTransportFactory("http://127.0.0.1:9", KEY)
    first: Any = factory.transport_for("openai", Source.AGENTS)  # its internals are read
    second: Any = factory.transport_for("anthropic", "other")
    other_flavour: Any = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
    assert first._target.pool is second._target.pool
    assert other_flavour._target.pool is not first._target.pool


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("ftp://bridge", "http:// or https://"),
        ("http://bridge?x=1", "query"),
        ("http://user:pw@bridge", "credentials"),
    ],
)
def test_bad_base_url_is_refused(base_url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HTTPTransportFactory(base_url, KEY)


def test_empty_gateway_key_is_refused() -> None:
    with pytest.raises(ValueError, match="gateway_key must not be empty"):
        HTTPTransportFactory("http://bridge", "")


def test_gateway_key_never_shows_in_repr() -> None:
    factory = HTTPTransportFactory("http://bridge", KEY)
    assert KEY not in repr(factory)
    assert KEY not in repr(factory.transport_for("openai", "agents"))


def test_bad_provider_and_flavour_are_refused() -> None:
    factory = HTTPTransportFactory("http://bridge", KEY)
    with pytest.raises(ValueError, match="provider name is required"):
        factory.transport_for("", "agents")
    with pytest.raises(ValueError, match="flavor"):
        factory.transport_for("openai", "agents", flavor="requests")  # type: ignore[call-overload]


FAKE = FakeAIBridge(default=Reply(text="Hello over the wire"))


@pytest.fixture(scope="module")
def fake_bridge_url() -> Iterator[str]:
    with running_server(GatewayAuthMiddleware(FAKE, KEY)) as url:
        yield url


# openai stops at `[DONE]` and leaves its own SSE generators unexhausted; trio's finalizer
# warns about them where asyncio's stays silent (the same happens in-process).
@pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object (SSEDecoder|AsyncStream)\."
    r":pytest.PytestUnraisableExceptionWarning"
)
async def test_openai_sdk_streams_through_the_standalone_bridge(fake_bridge_url: str) -> None:
    async with HTTPTransportFactory(fake_bridge_url, KEY) as factory:
        transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
        client = openai.AsyncOpenAI(
            base_url="http://aibridge/v1",
            api_key="sk-caller",
            http_client=httpx2.AsyncClient(transport=transport),
            max_retries=0,
        )
        with with_delegated_api_key_id("key-sdk"):
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            async with stream:
                text = "".join(
                    [
                        chunk.choices[0].delta.content or ""
                        async for chunk in stream
                        if chunk.choices
                    ]
                )
        await client.close()
    assert text == "Hello over the wire"
    record = FAKE.last_request
    assert record.path == "/api/v2/aibridge/openai/v1/chat/completions"
    assert (record.source, record.delegated_api_key_id) == ("agents", "key-sdk")
    assert record.extensions == {
        "provider": "openai",
        "source": "agents",
        "delegated_api_key_id": "key-sdk",
    }


async def test_anthropic_sdk_streams_through_the_standalone_bridge(fake_bridge_url: str) -> None:
    async with HTTPTransportFactory(fake_bridge_url, KEY) as factory:
        transport = factory.transport_for("anthropic", Source.AGENTS, flavor="httpx2")
        client = anthropic.AsyncAnthropic(
            base_url="http://aibridge",
            api_key="sk-ant-caller",
            http_client=httpx2.AsyncClient(transport=transport),
            max_retries=0,
        )
        with with_delegated_api_key_id("key-ant"):
            async with client.messages.stream(
                model="claude-test-model",
                max_tokens=64,
                messages=[{"role": "user", "content": "hi"}],
            ) as stream:
                text = "".join([delta async for delta in stream.text_stream])
        await client.close()
    assert text == "Hello over the wire"
    record = FAKE.last_request
    assert record.path == "/api/v2/aibridge/anthropic/v1/messages"
    assert (record.source, record.delegated_api_key_id) == ("agents", "key-ant")


# -- the gateway key never shows in a traceback's locals (behaviour §11) ---------------------

SECRET = "gw-9d1c6f0e-never-printed"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rendered(exc: BaseException) -> str:
    # What Sentry's locals capture and `pytest -l` print: every frame, locals included.
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


async def _failing_request(
    url: str, flavor: str, read_timeout: float | None = None
) -> BaseException:
    async with HTTPTransportFactory(url, SECRET) as factory:
        transport = factory.transport_for("openai", Source.AGENTS, flavor=flavor)  # type: ignore[call-overload]
        module: Any = httpx if flavor == "httpx" else httpx2
        async with module.AsyncClient(
            transport=transport, base_url="http://api.openai.example", timeout=read_timeout
        ) as http:
            with with_delegated_api_key_id("key-1"):
                try:
                    # No body: the request head is the only write, complete before the server
                    # (which reads the whole head first) answers or resets.
                    await http.get("/v1/models")
                except Exception as exc:
                    return exc
    raise AssertionError("the request did not fail")


@pytest.mark.parametrize("flavor", ["httpx", "httpx2"])
async def test_gateway_key_not_in_locals_when_the_bridge_is_down(flavor: str) -> None:
    error = await _failing_request(f"http://127.0.0.1:{_free_port()}", flavor)
    assert type(error).__name__ == "ConnectError"
    rendered = _rendered(error)
    assert "handle_async_request" in rendered  # the library's frames are there, with locals
    assert SECRET not in rendered


async def _serve_once(answer: Callable[[anyio.abc.SocketStream], Awaitable[None]]) -> Any:
    listener = (await anyio.create_tcp_listener(local_host="127.0.0.1")).listeners[0]
    assert isinstance(listener, anyio.abc.SocketListener)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve() -> None:
        async with listener:
            stream = await listener.accept()
            async with stream:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += await stream.receive()
                assert SECRET.encode() in head  # the key did travel, in the request head
                await answer(stream)

    return port, serve


async def _reset(stream: anyio.abc.SocketStream) -> None:
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("flavor", ["httpx", "httpx2"])
async def test_gateway_key_not_in_locals_when_the_bridge_resets(flavor: str) -> None:
    port, serve = await _serve_once(_reset)
    async with anyio.create_task_group() as group:
        group.start_soon(serve)
        error = await _failing_request(f"http://127.0.0.1:{port}", flavor)
    assert type(error).__name__ in ("ReadError", "RemoteProtocolError")
    rendered = _rendered(error)
    assert "handle_async_request" in rendered
    assert SECRET not in rendered


@pytest.mark.parametrize("flavor", ["httpx", "httpx2"])
async def test_gateway_key_not_in_locals_when_the_bridge_times_out(flavor: str) -> None:
    done = anyio.Event()

    async def stall(stream: anyio.abc.SocketStream) -> None:
        await done.wait()

    port, serve = await _serve_once(stall)
    async with anyio.create_task_group() as group:
        group.start_soon(serve)
        error = await _failing_request(f"http://127.0.0.1:{port}", flavor, read_timeout=0.2)
        done.set()
    assert type(error).__name__ == "ReadTimeout"
    rendered = _rendered(error)
    assert "handle_async_request" in rendered
    assert SECRET not in rendered


def test_gateway_key_not_in_any_repr() -> None:
    factory = HTTPTransportFactory("http://127.0.0.1:9", SECRET)
    transport = factory.transport_for("openai", Source.AGENTS)
    for shown in (factory, transport, vars(factory), vars(transport)):
        assert SECRET not in repr(shown)
