"""Real frameworks, in-process and behind uvicorn: the same requests must give the same answers.

Each framework's app (`framework_apps`) is served by a real uvicorn on 127.0.0.1, one server
per framework (and one more with `root_path`) for the whole module. Every case sends the same
request over that socket and in-process, through `StreamingASGITransport` (httpx and httpx2
flavours) and through `InProcessTransportFactory`, then compares status, headers, body bytes
and the scope the framework received. Where the two may differ, the tables below say so and
why; anything else that differs is a defect of the transport.

uvicorn runs on asyncio only. On trio the in-process side runs on trio and the socket side
is the same uvicorn (on its own asyncio thread), reached by a trio httpx client.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import httpx
import httpx2
import pytest
from _uvicorn import ServerThread
from framework_apps import BASE, ENDINGS, FRAMEWORKS, STARTED, VIEWS, Framework, gate, wait_for

import aibridge_transport.httpx2
from aibridge_transport import (
    InProcessTransportFactory,
    Source,
    StreamingASGITransport,
    with_delegated_api_key_id,
)

pytestmark = pytest.mark.anyio

ROOT_PATH = "/prefix"
BIG = bytes(range(256)) * 4096  # 1 MiB

# -- what may differ, and why ---------------------------------------------------------------

# Response headers only a server on a socket sends. Removed from both sides before comparing.
SOCKET_ONLY_HEADERS = {
    b"date": "uvicorn stamps each response with its clock; an in-process call has no server",
    b"server": "uvicorn names itself (`server: uvicorn`); the transport is not a server",
    b"transfer-encoding": (
        "HTTP/1.1 framing: h11 sends a body of unknown length chunked; in-process the body"
        " is handed over in ASGI messages, with nothing to frame"
    ),
}

# Scope keys that differ by construction. Compared as the right-hand side says, not as-is.
SCOPE_DIFFERENCES = {
    "client": (
        "uvicorn reports the socket's peer, whose port the kernel picks; the transport"
        " reports its `client=` argument. The host is compared, the port is not"
    ),
    "extensions": (
        "the transport always passes `extensions` ({} bare, the aibridge identity through"
        " the factory); uvicorn's h11 protocol sets none. Both mean: no extension the app"
        " has to honour"
    ),
    "state": (
        "a bare `StreamingASGITransport` runs no lifespan, so its `state` is {} whatever the"
        " app's startup stored; through the factory (which ran the lifespan) it must equal"
        " uvicorn's"
    ),
}


# -- the cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str  # below BASE
    headers: tuple[tuple[str, bytes], ...] = ()
    content: bytes | None = None
    # Compared chunk by chunk: the app sends each chunk only after the client read the one
    # before, so a transport that buffered would never deliver the first (it times out).
    gated: bool = False


CASES = [
    Case("json", "GET", "/json"),
    Case("echo-1mib", "POST", "/echo", content=BIG),
    Case("stream", "GET", "/stream", gated=True),
    Case("sse", "GET", "/sse", headers=(("accept", b"text/event-stream"),), gated=True),
    Case("status-201", "GET", "/status/201"),
    Case("status-204", "GET", "/status/204"),
    Case("status-304", "GET", "/status/304"),
    Case("status-418", "GET", "/status/418"),
    Case("not-found", "GET", "/no-such-route"),
    Case("server-error", "GET", "/raise"),
    Case("cookies", "GET", "/cookies"),
    Case("latin1-headers", "GET", "/latin1", headers=(("x-latin", "café".encode("latin-1")),)),
    Case("unicode-query", "GET", "/inspect/q?word=été&emoji=🙂&plus=a+b&amp=%26&empty=&k=1&k=2"),
    Case("escaped-path", "GET", "/inspect/caf%C3%A9/a%20b/semi%3Bcolon?slash=%2F"),
    Case("unicode-path", "GET", "/inspect/naïve/ü"),
    Case("mounted", "GET", "/sub/where?x=1"),
    Case("head", "HEAD", "/json"),
]
ROOT_PATH_CASES = [
    case for case in CASES if case.name in {"json", "escaped-path", "mounted", "not-found"}
]
STATE_CASE = Case("lifespan-state", "GET", "/state")
BACKGROUND_CASE = Case("background", "GET", "/background")

# Bare transports: `raise_app_exceptions=False`, as a server answers rather than raising.
TRANSPORTS = ["asgi-httpx", "asgi-httpx2", "factory", "factory-httpx2"]
FLAVOURS: dict[str, Any] = {"httpx": httpx, "httpx2": httpx2}


def flavour_of(transport: str) -> Literal["httpx", "httpx2"]:
    # The same client library on both sides: its default headers name it (`user-agent`).
    return "httpx2" if transport.endswith("httpx2") else "httpx"


# -- one request, over the socket or in-process ---------------------------------------------


@dataclass
class Outcome:
    status: int
    headers: list[tuple[bytes, bytes]]
    chunks: list[bytes] = field(default_factory=list)
    view: dict[str, Any] | None = None
    ended: str | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def __repr__(self) -> str:
        # Short: a failing comparison prints this, and a body may be a mebibyte.
        body = self.body
        shown = body if len(body) <= 80 else body[:80] + b"..."
        return (
            f"Outcome(status={self.status}, headers={self.headers}, body[{len(body)}]={shown!r},"
            f" ended={self.ended!r})"
        )


async def fetch(client: Any, case: Case, path: str, probe: str) -> Outcome:
    headers = [*case.headers, ("x-probe", probe.encode())]
    async with client.stream(case.method, path, headers=headers, content=case.content) as response:
        outcome = Outcome(response.status_code, list(response.headers.raw))
        async for chunk in response.aiter_raw():
            if chunk:
                outcome.chunks.append(chunk)
                gate(f"{probe}/read-{len(outcome.chunks) - 1}").set()
    outcome.view = VIEWS.pop(probe, None)
    return outcome


async def ending(probe: str) -> str:
    """How the framework's call for `probe` ended, once it has."""
    await wait_for(f"{probe}/ended")
    return ENDINGS.pop(probe)


async def over_socket(base_url: str, case: Case, flavour: str = "httpx") -> Outcome:
    probe = uuid.uuid4().hex
    # Plain http to 127.0.0.1: `verify=False` spares loading the CA bundle for each client.
    async with FLAVOURS[flavour].AsyncClient(base_url=base_url, verify=False) as client:
        outcome = await fetch(client, case, BASE + case.path, probe)
    gate(f"{probe}/client-closed").set()
    outcome.ended = await ending(probe)
    return outcome


async def in_process(
    framework: Framework,
    base_url: str,
    case: Case,
    transport: str,
    root_path: str = "",
    *,
    end_before_close: bool = True,
) -> Outcome:
    app = framework.app()
    probe = uuid.uuid4().hex
    # The factory runs the app's lifespan, so the framework is started as under uvicorn;
    # the bare transports then reach the same started app.
    async with InProcessTransportFactory(app) as factory:
        path = BASE + case.path
        if transport.startswith("factory"):
            assert not root_path, "the factory is not given an asgi_root_path here"
            flavour = flavour_of(transport)
            module: Any = FLAVOURS[flavour]
            chosen: Any = factory.transport_for("openai", Source.AGENTS, flavor=flavour)
            path = case.path  # the factory places it under BASE
        elif transport == "asgi-httpx":
            module = httpx
            chosen = StreamingASGITransport(app, raise_app_exceptions=False, root_path=root_path)
        else:
            module = httpx2
            chosen = aibridge_transport.httpx2.StreamingASGITransport(
                app, raise_app_exceptions=False, root_path=root_path
            )
        async with anyio.create_task_group() as group:
            if not (end_before_close or transport.startswith("factory")):
                # A bare transport's close waits for the app's work after its response
                # (behaviour §6): that work ends while the close waits.
                group.start_soon(release_when_blocked, probe)
            # The server's own URL: `host` and `server` then match what uvicorn saw.
            async with module.AsyncClient(transport=chosen, base_url=base_url) as client:
                with with_delegated_api_key_id("key-1"):
                    outcome = await fetch(client, case, path, probe)
                if end_before_close:
                    outcome.ended = await ending(probe)
        if not end_before_close:
            # Closing a factory's client neither waited for the app nor cancelled it.
            assert probe not in ENDINGS or not transport.startswith("factory")
            gate(f"{probe}/client-closed").set()
            outcome.ended = await ending(probe)
    return outcome


async def release_when_blocked(probe: str) -> None:
    """Let the app's work after its response end, once the test waits for nothing else."""
    await anyio.wait_all_tasks_blocked()
    gate(f"{probe}/client-closed").set()


# -- comparing ------------------------------------------------------------------------------


def comparable_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower(), value) for name, value in headers if name.lower() not in SOCKET_ONLY_HEADERS
    ]


def comparable_view(view: dict[str, Any] | None, *, compare_state: bool) -> dict[str, Any]:
    assert view is not None, "the framework never received the request"
    seen = dict(view)
    # One line per entry of SCOPE_DIFFERENCES.
    seen["client"] = seen["client"][0] if seen["client"] else None
    del seen["extensions"]
    if not compare_state:
        del seen["state"]
    return seen


def assert_same(expected: Outcome, actual: Outcome, case: Case, *, compare_state: bool) -> None:
    assert actual.status == expected.status
    assert comparable_headers(actual.headers) == comparable_headers(expected.headers)
    if case.gated:
        assert actual.chunks == expected.chunks
        assert len(actual.chunks) == 3
    assert actual.body == expected.body
    assert comparable_view(actual.view, compare_state=compare_state) == comparable_view(
        expected.view, compare_state=compare_state
    )
    assert actual.ended == expected.ended


# -- the servers: one per framework (and root path), for the whole module -------------------


class Servers:
    """Started on first use; all stopped together at the end of the module."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, str], ServerThread] = {}

    def url(self, framework: Framework, root_path: str = "") -> str:
        key = (framework.name, root_path)
        if key not in self._running:
            server = ServerThread(framework.app(), root_path=root_path)
            server.start()
            self._running[key] = server
        return self._running[key].url

    def close(self) -> None:
        for server in self._running.values():
            server.stop()
        for server in self._running.values():
            server.join()


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    running = Servers()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(params=list(FRAMEWORKS))
def framework(request: pytest.FixtureRequest, anyio_backend: str) -> Framework:
    chosen = FRAMEWORKS[request.param]
    if anyio_backend == "trio" and chosen.not_on_trio:
        pytest.skip(chosen.not_on_trio)
    return chosen


# -- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
async def test_same_as_uvicorn(
    framework: Framework, case: Case, transport: str, servers: Servers
) -> None:
    base_url = servers.url(framework)
    expected = await over_socket(base_url, case, flavour_of(transport))
    actual = await in_process(framework, base_url, case, transport)
    assert_same(expected, actual, case, compare_state=transport.startswith("factory"))
    if not transport.startswith("factory"):
        assert actual.view is not None
        assert actual.view["state"] == {}
    if case.method == "HEAD":
        assert actual.body == b""


@pytest.mark.parametrize("transport", ["asgi-httpx", "asgi-httpx2"])
@pytest.mark.parametrize("case", ROOT_PATH_CASES, ids=lambda case: case.name)
async def test_root_path_same_as_uvicorn(
    framework: Framework, case: Case, transport: str, servers: Servers
) -> None:
    base_url = servers.url(framework, ROOT_PATH)
    expected = await over_socket(base_url, case, flavour_of(transport))
    actual = await in_process(framework, base_url, case, transport, ROOT_PATH)
    assert_same(expected, actual, case, compare_state=False)
    assert actual.view is not None
    assert actual.view["root_path"] == ROOT_PATH


async def test_lifespan_state_same_as_uvicorn(framework: Framework, servers: Servers) -> None:
    base_url = servers.url(framework)
    expected = await over_socket(base_url, STATE_CASE)
    actual = await in_process(framework, base_url, STATE_CASE, "factory")
    assert_same(expected, actual, STATE_CASE, compare_state=True)
    # Django speaks no lifespan; every other framework's startup ran in-process.
    started = None if framework.name == "django" else STARTED
    assert json.loads(actual.body) == {"started": started}


# Where the framework runs background tasks inside the request's ASGI call.
@pytest.mark.parametrize("framework", ["starlette", "fastapi", "litestar"], indirect=True)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_background_task_runs_to_its_end_as_under_uvicorn(
    framework: Framework, transport: str, servers: Servers
) -> None:
    # Behaviour §6: a complete response is the end of the client's business, not the app's.
    # uvicorn lets a background task run on after its client left; so does the transport:
    # closing a factory's client neither waits for it nor cancels it (the factory's close
    # waits), and a bare transport's close waits for it, as httpx.ASGITransport does.
    base_url = servers.url(framework)
    expected = await over_socket(base_url, BACKGROUND_CASE, flavour_of(transport))
    actual = await in_process(
        framework, base_url, BACKGROUND_CASE, transport, end_before_close=False
    )
    assert expected.ended == "returned"
    assert actual.ended == "returned"
    assert (actual.status, actual.body) == (expected.status, expected.body)
