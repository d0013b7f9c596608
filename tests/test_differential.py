"""The same bridge app, reached in-process and over HTTP, must look the same (behaviour §11).

Every case runs the request once through `InProcessTransportFactory` and once through
`HTTPTransportFactory` against a real uvicorn serving the app behind `GatewayAuthMiddleware`,
under each mount (`/api/v2/aibridge` and `/api/v2/ai-gateway`), then compares what the
caller saw (status, the headers that matter, body bytes, exception type) and what the app saw
(scope, extensions, context variables, attribution). Where the two must differ, the test says
why.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from _uvicorn import running_server
from asgi import ThreadGates, chunk, read_body, start

from aibridge_transport import (
    AI_GATEWAY_ROOT_PATH,
    AIBRIDGE_ROOT_PATH,
    GatewayAuthMiddleware,
    HTTPTransportFactory,
    InProcessTransportFactory,
    MissingDelegatedAPIKeyError,
    PathOutsideProviderError,
    RedirectRefusedError,
    Source,
    delegated_api_key_id_from_context,
    delegated_attribution_from_context,
    source_from_context,
    with_delegated_api_key_id,
    with_delegated_attribution,
)
from aibridge_transport.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio

KEY = "differential-gateway-key"
BIG = bytes(range(256)) * 4096  # 1 MiB
# Headers only the socket adds (uvicorn's `date` and `server`, HTTP/1.1 framing).
SOCKET_ONLY_HEADERS = {"date", "server", "transfer-encoding", "connection"}

# What each request's app saw, by the `x-probe` header; written from either loop's thread.
VIEWS: dict[str, dict[str, Any]] = {}
gate = ThreadGates()
wait_for = gate.wait_for


# -- the corpus: one ASGI app, a route per behaviour ----------------------------------------


def _identity() -> tuple[str | None, str | None, uuid.UUID | None]:
    return (
        source_from_context(),
        delegated_api_key_id_from_context(),
        delegated_attribution_from_context(),
    )


async def _identity_into(into: list[Any]) -> None:
    into.append(_identity())


async def record(scope: Scope) -> str:
    from_task: list[Any] = []
    async with anyio.create_task_group() as group:
        group.start_soon(_identity_into, from_task)
    headers = dict(scope["headers"])
    probe: str = headers[b"x-probe"].decode()
    VIEWS[probe] = {
        "type": scope["type"],
        "asgi": scope["asgi"],
        "http_version": scope["http_version"],
        "method": scope["method"],
        "scheme": scope["scheme"],
        "path": scope["path"],
        "raw_path": scope["raw_path"],
        "query_string": scope["query_string"],
        "root_path": scope["root_path"],
        # `host` names where the request was sent: the caller's base URL in-process, the
        # bridge's address over HTTP.
        "headers": [pair for pair in scope["headers"] if pair[0] not in (b"host", b"x-probe")],
        "state": dict(scope["state"]),
        "extensions": scope.get("extensions"),
        "identity": _identity(),
        "task_identity": from_task[0],
    }
    return probe


async def plain(scope: Scope, receive: Receive, send: Send) -> None:
    await record(scope)
    body = await read_body(receive)
    headers = [
        (b"content-type", b"application/json"),
        (b"x-dup", b"first"),
        (b"x-dup", b"second"),
        (b"content-length", str(len(body) + 2).encode()),
    ]
    await send(start(headers, status=201))
    await send(chunk(b"[" + body + b"]", more_body=False))


async def large(scope: Scope, receive: Receive, send: Send) -> None:
    await record(scope)
    body = await read_body(receive)
    assert body == BIG
    await send(start())
    for offset in range(0, len(BIG), 64 * 1024):
        await send(chunk(BIG[offset : offset + 64 * 1024]))
    await send(chunk(b"", more_body=False))


async def sse(scope: Scope, receive: Receive, send: Send) -> None:
    probe = await record(scope)
    headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
    await send(start(headers))
    for number in range(3):
        event = f"data: token-{number}\n\n".encode()
        await send(chunk(event))
        # The next token only once the caller has read this one: chunk by chunk (behaviour §5).
        await wait_for(f"{probe}/read-{number}")
    await send(chunk(b"data: [DONE]\n\n", more_body=False))


async def head(scope: Scope, receive: Receive, send: Send) -> None:
    await record(scope)
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    await send(start(headers))
    await send(chunk(b"hello", more_body=False))


async def crash_before_start(scope: Scope, receive: Receive, send: Send) -> None:
    await record(scope)
    raise RuntimeError("the provider key is invalid")


async def crash_mid_stream(scope: Scope, receive: Receive, send: Send) -> None:
    probe = await record(scope)
    await send(start())
    await send(chunk(b"partial"))
    await wait_for(f"{probe}/read-0")
    raise RuntimeError("upstream went away")


async def incomplete(scope: Scope, receive: Receive, send: Send) -> None:
    probe = await record(scope)
    await send(start())
    await send(chunk(b"partial"))
    await wait_for(f"{probe}/read-0")


async def body_before_start(scope: Scope, receive: Receive, send: Send) -> None:
    await record(scope)
    await send(chunk(b"too early", more_body=False))


async def second_start(scope: Scope, receive: Receive, send: Send) -> None:
    probe = await record(scope)
    await send(start())
    await send(chunk(b"partial"))
    await wait_for(f"{probe}/read-0")
    await send(start(status=500))


async def no_start(scope: Scope, receive: Receive, send: Send) -> None:
    await record(scope)


async def crash_after_end(scope: Scope, receive: Receive, send: Send) -> None:
    await record(scope)
    await send(start())
    await send(chunk(b"complete", more_body=False))
    raise RuntimeError("cleanup failed")


async def mutate_state(scope: Scope, receive: Receive, send: Send) -> None:
    await record(scope)
    # A shallow copy per request: neither change may reach the next request (behaviour §8).
    scope["state"]["model"] = "changed"
    scope["state"]["added"] = True
    await send(start(status=204))
    await send(chunk(b"", more_body=False))


async def hold(scope: Scope, receive: Receive, send: Send) -> None:
    probe = await record(scope)
    await send(start())
    await send(chunk(b"first"))
    while (await receive())["type"] != "http.disconnect":
        pass
    VIEWS[probe]["disconnected"] = True
    gate(f"{probe}/disconnected").set()


async def stall(scope: Scope, receive: Receive, send: Send) -> None:
    probe = await record(scope)
    await wait_for(f"{probe}/release")
    await send(start())
    await send(chunk(b"late", more_body=False))


async def redirect(scope: Scope, receive: Receive, send: Send) -> None:
    await record(scope)
    headers = [(b"location", b"https://elsewhere.example/")]
    await send(start(headers, status=307))
    await send(chunk(b"", more_body=False))


ROUTES = {
    "plain": plain,
    "large": large,
    "sse": sse,
    "head": head,
    "crash-before-start": crash_before_start,
    "crash-mid-stream": crash_mid_stream,
    "incomplete": incomplete,
    "body-before-start": body_before_start,
    "second-start": second_start,
    "no-start": no_start,
    "crash-after-end": crash_after_end,
    "mutate-state": mutate_state,
    "hold": hold,
    "stall": stall,
    "redirect": redirect,
}


async def corpus(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        scope["state"].update(model="gpt", limits={"rpm": 60})
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    parts = scope["path"].split("/")
    await ROUTES[parts[6] if len(parts) > 6 else "plain"](scope, receive, send)


# -- running one request both ways ----------------------------------------------------------


@pytest.fixture(scope="module")
def bridge_url() -> Iterator[str]:
    with running_server(GatewayAuthMiddleware(corpus, KEY), lifespan="on") as url:
        yield url


@dataclass
class Outcome:
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    error: str | None = None
    view: dict[str, Any] | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


@dataclass
class Both:
    in_process: InProcessTransportFactory
    over_http: HTTPTransportFactory
    mount: str

    async def run(
        self,
        flavor: str,
        method: str,
        path: str,
        *,
        key_id: str | None = "key-1",
        content: bytes | None = None,
        stop_after: int | None = None,
        read_timeout: float | None = None,
        workspace_id: uuid.UUID | None = None,
    ) -> tuple[Outcome, Outcome]:
        outcomes = []
        for factory in (self.in_process, self.over_http):
            with contextlib.ExitStack() as attributed:
                if workspace_id is not None:
                    attributed.enter_context(with_delegated_attribution(workspace_id))
                outcomes.append(
                    await run_one(
                        factory, flavor, method, path, key_id, content, stop_after, read_timeout
                    )
                )
        return outcomes[0], outcomes[1]


async def run_one(
    factory: InProcessTransportFactory | HTTPTransportFactory,
    flavor: str,
    method: str,
    path: str,
    key_id: str | None,
    content: bytes | None,
    stop_after: int | None,
    read_timeout: float | None,
) -> Outcome:
    module: Any = httpx if flavor == "httpx" else httpx2
    probe = uuid.uuid4().hex
    outcome = Outcome()
    transport = factory.transport_for("openai", Source.AGENTS, flavor=flavor)  # type: ignore[call-overload]
    timeout = module.Timeout(10, read=read_timeout)
    async with module.AsyncClient(
        transport=transport, base_url="http://api.openai.example", timeout=timeout
    ) as client:
        try:
            with with_delegated_api_key_id(key_id or ""):
                async with client.stream(
                    method, path, headers={"x-probe": probe}, content=content
                ) as response:
                    outcome.status = response.status_code
                    outcome.headers = [
                        (name, value)
                        for name, value in response.headers.multi_items()
                        if name not in SOCKET_ONLY_HEADERS
                    ]
                    async for chunk in response.aiter_raw():
                        gate(f"{probe}/read-{len(outcome.chunks)}").set()
                        outcome.chunks.append(chunk)
                        if stop_after is not None and len(outcome.chunks) >= stop_after:
                            break
        except Exception as exc:
            flavour_error = isinstance(exc, module.HTTPError | module.StreamError)
            assert flavour_error or type(exc).__module__.startswith("aibridge_transport"), exc
            outcome.error = type(exc).__name__
        finally:
            gate(f"{probe}/release").set()
    if stop_after is not None:
        await wait_for(f"{probe}/disconnected")
    outcome.view = VIEWS.pop(probe, None)
    return outcome


@pytest.fixture(params=[AIBRIDGE_ROOT_PATH, AI_GATEWAY_ROOT_PATH], ids=["aibridge", "ai-gateway"])
async def both(bridge_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Both]:
    mount: str = request.param
    async with (
        InProcessTransportFactory(corpus, root_path=mount) as in_process,
        HTTPTransportFactory(bridge_url, KEY, root_path=mount) as over_http,
    ):
        yield Both(in_process, over_http, mount)


FLAVORS = pytest.mark.parametrize("flavor", ["httpx", "httpx2"])


def assert_same_view(local: Outcome, remote: Outcome) -> None:
    assert local.view is not None
    assert local.view == remote.view


# -- the cases ------------------------------------------------------------------------------


@FLAVORS
async def test_plain_request(both: Both, flavor: str) -> None:
    local, remote = await both.run(flavor, "POST", "/v1/plain?x=1&y=%20", content=b'"hi"')
    assert local.status == remote.status == 201
    assert local.headers == remote.headers
    assert ("x-dup", "first") in local.headers
    assert local.body == remote.body == b'["hi"]'
    assert local.error is remote.error is None
    assert_same_view(local, remote)
    assert local.view is not None
    assert local.view["path"] == f"{both.mount}/openai/v1/plain"
    assert local.view["extensions"] == {
        "aibridge": {"provider": "openai", "source": "agents", "delegated_api_key_id": "key-1"}
    }
    assert local.view["identity"] == local.view["task_identity"] == ("agents", "key-1", None)


@FLAVORS
async def test_encoded_and_prefixed_paths(both: Both, flavor: str) -> None:
    paths = [
        "/v1/plain/a%20b%2Fc/",
        "/api/v2/aibridge/openai/v1/plain",
        "/api/v2/ai-gateway/openai/v1/plain",
        "//v1//plain",
    ]
    for path in paths:
        local, remote = await both.run(flavor, "GET", path)
        assert local.status == remote.status == 201
        assert_same_view(local, remote)
        assert local.view is not None
        assert local.view["path"].startswith(f"{both.mount}/openai/")


@FLAVORS
async def test_attribution(both: Both, flavor: str) -> None:
    workspace_id = uuid.uuid4()
    local, remote = await both.run(flavor, "POST", "/v1/plain", workspace_id=workspace_id)
    assert local.status == remote.status == 201
    assert_same_view(local, remote)
    assert local.view is not None
    assert local.view["extensions"]["aibridge"]["workspace_id"] == workspace_id
    expected = ("agents", "key-1", workspace_id)
    assert local.view["identity"] == local.view["task_identity"] == expected


@FLAVORS
async def test_non_ascii_identity(both: Both, flavor: str) -> None:
    local, remote = await both.run(flavor, "GET", "/v1/plain", key_id="clé-ünïcode")
    assert_same_view(local, remote)
    assert local.view is not None
    assert local.view["identity"] == ("agents", "clé-ünïcode", None)


@FLAVORS
async def test_large_bodies(both: Both, flavor: str) -> None:
    local, remote = await both.run(flavor, "PUT", "/v1/large", content=BIG)
    assert local.status == remote.status == 200
    assert local.body == remote.body == BIG
    assert_same_view(local, remote)


@FLAVORS
async def test_sse_streams_token_by_token(both: Both, flavor: str) -> None:
    local, remote = await both.run(flavor, "POST", "/v1/sse", content=b"{}")
    assert local.headers == remote.headers
    # Lock-step: each token was read before the next was produced, so each is its own chunk.
    expected = [b"data: token-0\n\n", b"data: token-1\n\n", b"data: token-2\n\n"]
    assert local.chunks == remote.chunks == [*expected, b"data: [DONE]\n\n"]
    assert_same_view(local, remote)


@FLAVORS
async def test_head_has_no_body(both: Both, flavor: str) -> None:
    local, remote = await both.run(flavor, "HEAD", "/v1/head")
    assert local.status == remote.status == 200
    assert local.headers == remote.headers
    assert ("content-length", "5") in local.headers
    assert local.body == remote.body == b""
    assert_same_view(local, remote)


@FLAVORS
@pytest.mark.parametrize("route", ["crash-before-start", "no-start", "body-before-start"])
async def test_failure_before_start_is_a_500(both: Both, flavor: str, route: str) -> None:
    local, remote = await both.run(flavor, "GET", f"/v1/{route}")
    assert local.status == remote.status == 500
    # uvicorn frames its own 500 by closing the connection, the in-process one by
    # content-length: framing is the socket's business, the content type is the same.
    content_type = ("content-type", "text/plain; charset=utf-8")
    assert content_type in local.headers
    assert content_type in remote.headers
    assert ("content-length", "21") in local.headers
    assert local.body == remote.body == b"Internal Server Error"
    assert_same_view(local, remote)


@FLAVORS
@pytest.mark.parametrize("route", ["crash-mid-stream", "incomplete", "second-start"])
async def test_failure_after_start_breaks_the_body(both: Both, flavor: str, route: str) -> None:
    local, remote = await both.run(flavor, "GET", f"/v1/{route}")
    assert local.status == remote.status == 200
    assert local.body == remote.body == b"partial"
    assert local.error == remote.error == "RemoteProtocolError"
    assert_same_view(local, remote)


@FLAVORS
async def test_failure_after_the_end_is_not_seen(both: Both, flavor: str) -> None:
    local, remote = await both.run(flavor, "GET", "/v1/crash-after-end")
    assert local.status == remote.status == 200
    assert local.body == remote.body == b"complete"
    assert local.error is remote.error is None


@FLAVORS
async def test_lifespan_state_is_copied_per_request(both: Both, flavor: str) -> None:
    first_local, first_remote = await both.run(flavor, "POST", "/v1/mutate-state")
    second_local, second_remote = await both.run(flavor, "POST", "/v1/mutate-state")
    for outcome in (first_local, first_remote, second_local, second_remote):
        assert outcome.view is not None
        assert outcome.view["state"] == {"model": "gpt", "limits": {"rpm": 60}}
    assert_same_view(second_local, second_remote)


@FLAVORS
async def test_early_close_disconnects_the_app(both: Both, flavor: str) -> None:
    local, remote = await both.run(flavor, "GET", "/v1/hold", stop_after=1)
    assert local.chunks == remote.chunks == [b"first"]
    assert local.view is not None and remote.view is not None
    assert local.view.pop("disconnected") is remote.view.pop("disconnected") is True
    assert_same_view(local, remote)


@FLAVORS
async def test_read_timeout(both: Both, flavor: str) -> None:
    local, remote = await both.run(flavor, "GET", "/v1/stall", read_timeout=0.05)
    assert local.error == remote.error == "ReadTimeout"
    assert_same_view(local, remote)


@FLAVORS
async def test_missing_delegated_key_is_refused_before_the_app(both: Both, flavor: str) -> None:
    local, remote = await both.run(flavor, "GET", "/v1/plain", key_id=None)
    assert local.error == remote.error == MissingDelegatedAPIKeyError.__name__
    assert local.view is remote.view is None


@FLAVORS
async def test_path_outside_the_provider_is_refused(both: Both, flavor: str) -> None:
    local, remote = await both.run(flavor, "GET", "/v1/%2e%2e/%2e%2e/anthropic/v1")
    assert local.error == remote.error == PathOutsideProviderError.__name__
    assert local.view is remote.view is None


@FLAVORS
async def test_redirects_differ_on_purpose(both: Both, flavor: str) -> None:
    # In-process the response never leaves the process, so a 3xx is handed to the caller;
    # over HTTP it is refused, so that the identity headers are never sent anywhere else.
    local, remote = await both.run(flavor, "GET", "/v1/redirect")
    assert local.status == 307
    assert local.error is None
    assert remote.error == RedirectRefusedError.__name__
    assert_same_view(local, remote)
