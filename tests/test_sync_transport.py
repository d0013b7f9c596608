"""Behaviour §12: sync clients on the in-process transports, every kind and both flavours."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import httpx2
import pytest
import sniffio
from asgi import wait_for_disconnect

from aibridge_transport import (
    InProcessTransportFactory,
    MissingDelegatedAPIKeyError,
    Source,
    StreamingASGITransport,
    delegated_api_key_id_from_context,
    source_from_context,
    with_delegated_api_key_id,
    with_source,
)
from aibridge_transport._loop_host import call_soon
from aibridge_transport.httpx2 import StreamingASGITransport as StreamingASGITransport2
from aibridge_transport.types import Receive, Scope, Send

KINDS = ["bare-httpx", "bare-httpx2", "factory-httpx", "factory-httpx2"]
WAIT = 10.0  # a bound on waits that must not happen: a regression fails instead of hanging


def start(status: int = 200) -> dict[str, object]:
    return {"type": "http.response.start", "status": status, "headers": [(b"x-a", b"1")]}


def chunk(body: bytes, more_body: bool = True) -> dict[str, object]:
    return {"type": "http.response.body", "body": body, "more_body": more_body}


class FirstThenDisconnect:
    """Sends a first chunk, then waits until the client leaves; tells a thread when it has."""

    def __init__(self) -> None:
        self.disconnected = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(chunk(b"first"))
        await wait_for_disconnect(receive)
        self.disconnected.set()


@dataclass
class Kind:
    name: str
    module: Any
    client: Any
    closers: list[Any] = field(default_factory=list)


def make_client(kind: str, app: Any, **options: Any) -> tuple[Any, Any, Any]:
    """(client, module, owner): `owner.close()` ends everything the kind started."""
    module: Any = httpx2 if kind.endswith("httpx2") else httpx
    flavor = "httpx2" if kind.endswith("httpx2") else "httpx"
    if kind.startswith("bare"):
        bare = StreamingASGITransport2 if flavor == "httpx2" else StreamingASGITransport
        transport = bare(app, **options)
        return module.Client(transport=transport, base_url="http://app"), module, transport
    factory = InProcessTransportFactory(app, **options)
    transport = factory.transport_for("openai", Source.AGENTS, flavor=flavor)  # type: ignore[call-overload]
    return module.Client(transport=transport, base_url="http://app"), module, factory


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> Iterator[str]:
    with with_delegated_api_key_id("key-sync"):
        yield str(request.param)


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "aibridge-transport-loop"]


def test_transports_are_sync_transports_of_their_flavour() -> None:
    assert issubclass(StreamingASGITransport, httpx.BaseTransport)
    assert issubclass(StreamingASGITransport, httpx.AsyncBaseTransport)
    assert issubclass(StreamingASGITransport2, httpx2.BaseTransport)
    assert not any(c.__module__.startswith("httpx.") for c in StreamingASGITransport2.__mro__)
    factory = InProcessTransportFactory(echo)
    for flavor, module in (("httpx", httpx), ("httpx2", httpx2)):
        transport = factory.transport_for("openai", Source.AGENTS, flavor=flavor)  # type: ignore[call-overload]
        assert isinstance(transport, module.BaseTransport)
        if flavor == "httpx2":
            assert not any(c.__module__.startswith("httpx.") for c in type(transport).__mro__)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send(start())
    await send(chunk(scope["path"].encode() + b"|" + body, more_body=False))


def test_request_and_body_reach_the_app_whole_and_in_order(kind: str) -> None:
    client, _, owner = make_client(kind, echo)
    producer: list[int] = []

    def upload() -> Iterator[bytes]:
        for part in (b"one ", b"two ", b"three"):
            producer.append(threading.get_ident())
            yield part

    with client:
        response = client.post("/v1/chat", content=upload())
        assert response.status_code == 200
        path, body = response.content.split(b"|")
        assert body == b"one two three"
        assert client.post("/v1/chat", content=b"bytes body").content.endswith(b"|bytes body")
    owner.close()
    # Consumed in the calling thread, never on the app's loop (behaviour §12).
    assert set(producer) == {threading.get_ident()}
    if kind.startswith("factory"):
        assert path == b"/api/v2/aibridge/openai/v1/chat"


def test_chunks_arrive_in_lock_step_across_threads(kind: str) -> None:
    acks = [threading.Event() for _ in range(3)]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        for index, ack in enumerate(acks):
            await send(chunk(b"%d" % index))
            # The next chunk waits for the reader's ack: each one arrived alone.
            await anyio.to_thread.run_sync(ack.wait, abandon_on_cancel=True)
        await send(chunk(b"", more_body=False))

    client, _, owner = make_client(kind, app)
    with client, client.stream("GET", "/v1/x") as response:
        assert response.headers["x-a"] == "1"
        received = []
        for data in response.iter_raw():
            received.append(data)
            acks[len(received) - 1].set()
    owner.close()
    assert received == [b"0", b"1", b"2"]


def test_resumed_iteration_and_head(kind: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        for part in (b"a", b"b", b"c"):
            await send(chunk(part))
        await send(chunk(b"", more_body=False))

    client, _, owner = make_client(kind, app)
    with client:
        with client.stream("GET", "/v1/x") as response:
            stream = response.stream
            first = next(iter(stream))
            rest = list(stream)
        assert [first, *rest] == [b"a", b"b", b"c"]
        assert client.head("/v1/x").content == b""
    owner.close()


def test_errors_before_and_after_the_start(kind: str) -> None:
    async def before(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("before")

    async def after(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(chunk(b"part"))
        raise ValueError("after")

    client, module, owner = make_client(kind, before)
    with client:
        if kind.startswith("bare"):  # raise mode
            with pytest.raises(ValueError, match="before"):
                client.get("/v1/x")
        else:  # 500 mode
            response = client.get("/v1/x")
            assert (response.status_code, response.text) == (500, "Internal Server Error")
    owner.close()
    client, module, owner = make_client(kind, after)
    with client, client.stream("GET", "/v1/x") as response:
        iterator = response.iter_raw()
        assert next(iterator) == b"part"
        if kind.startswith("bare"):  # raise mode: the app's own exception (behaviour §7)
            with pytest.raises(ValueError, match="after"):
                next(iterator)
        else:  # 500 mode
            with pytest.raises(module.RemoteProtocolError) as caught:
                next(iterator)
            assert isinstance(caught.value.__cause__, ValueError)
    owner.close()


def test_read_timeout_is_the_flavours_own(kind: str) -> None:
    async def stall(scope: Scope, receive: Receive, send: Send) -> None:
        await wait_for_disconnect(receive)

    client, module, owner = make_client(kind, stall)
    with client, pytest.raises(module.ReadTimeout):
        client.get("/v1/x", timeout=module.Timeout(10.0, read=0.05))
    owner.close()


def test_close_from_another_thread_ends_a_blocked_reader(kind: str) -> None:
    app = FirstThenDisconnect()
    disconnected = app.disconnected

    client, module, owner = make_client(kind, app)
    outcome: list[object] = []
    with client, client.stream("GET", "/v1/x") as response:
        iterator = response.iter_raw()
        assert next(iterator) == b"first"

        def read() -> None:
            try:
                outcome.extend(iterator)
                outcome.append("ended")
            except module.StreamClosed as exc:
                outcome.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        closer = threading.Thread(target=response.close)
        closer.start()
        closer.join(WAIT)
        reader.join(WAIT)
        assert not reader.is_alive() and not closer.is_alive()
    assert disconnected.wait(WAIT)
    assert outcome and (outcome[-1] == "ended" or isinstance(outcome[-1], module.StreamClosed))
    owner.close()


def test_abandoned_response_is_released_when_collected(kind: str) -> None:
    app = FirstThenDisconnect()
    disconnected = app.disconnected

    client, _, owner = make_client(kind, app)
    request = client.build_request("GET", "/v1/x")
    response = client.send(request, stream=True)
    assert next(response.iter_raw()) == b"first"
    del response
    gc.collect()
    assert disconnected.wait(WAIT)
    client.close()
    owner.close()


# The same numbers as tests/test_streaming.py asserts of the async side; 0 is lock step.
@pytest.mark.parametrize("buffered", [0, 1, 4, 8])
def test_backpressure_bounds_how_far_the_app_runs_ahead(kind: str, buffered: int) -> None:
    sent = 0
    blocked = threading.Event()
    reached: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal sent
        await send(start())
        for _ in range(100):
            await send(chunk(b"x"))
            sent += 1
        await send(chunk(b"", more_body=False))

    async def probe() -> None:
        await anyio.wait_all_tasks_blocked()
        reached.append(sent)
        blocked.set()

    client, _, owner = make_client(kind, app, max_buffered_chunks=buffered)
    with client, client.stream("GET", "/v1/x") as response:
        host = client._transport.loop_host
        assert host is not None
        host.run(probe)
        iterator = response.iter_raw()
        next(iterator)
        host.run(probe)
        rest = list(iterator)
    owner.close()
    # The app runs max_buffered_chunks ahead, no further; none at all is lock step.
    assert reached == [buffered, buffered + 1]
    assert len(rest) == 99


def test_missing_key_is_refused_before_the_app_runs() -> None:
    called = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope)

    factory = InProcessTransportFactory(app)
    with httpx.Client(transport=factory.transport_for("openai", Source.AGENTS)) as client:
        with pytest.raises(MissingDelegatedAPIKeyError):
            client.get("http://app/v1/x")
    factory.close()
    assert called == []


def test_each_calling_threads_context_reaches_the_app_concurrently() -> None:
    count = 8
    seen: dict[str, tuple[str | None, str | None]] = {}
    arrived = 0
    everyone: anyio.Event | None = None

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal arrived, everyone
        if scope["type"] != "http":
            return
        if everyone is None:
            everyone = anyio.Event()
        arrived += 1
        if arrived == count:
            everyone.set()
        await everyone.wait()  # every request is in the app at once
        key = delegated_api_key_id_from_context()
        assert key is not None
        seen[key] = (source_from_context(), sniffio.current_async_library())
        await send(start())
        await send(chunk(key.encode(), more_body=False))

    results: dict[str, bytes] = {}
    with InProcessTransportFactory(app) as factory:
        client = httpx.Client(transport=factory.transport_for("openai", Source.AGENTS))

        def call(key: str) -> None:
            sniffio.current_async_library_cvar.set("trio")  # this thread's own loop marker
            with with_source("elsewhere"), with_delegated_api_key_id(key):
                results[key] = client.get("http://app/v1/x").content

        threads = [threading.Thread(target=call, args=(f"k{n}",)) for n in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        client.close()
    assert results == {f"k{n}": f"k{n}".encode() for n in range(count)}
    # The app runs on the factory's asyncio loop: the callers' trio marker stayed behind.
    assert {library for _, library in seen.values()} == {"asyncio"}
    # The source is the transport's, whatever the calling thread had set.
    assert {source for source, _ in seen.values()} == {"agents"}


def test_thread_count_after_sequential_and_concurrent_requests() -> None:
    before = set(threading.enumerate())
    with InProcessTransportFactory(echo) as factory, with_delegated_api_key_id("k"):
        client = httpx.Client(transport=factory.transport_for("openai", Source.AGENTS))
        for _ in range(200):
            assert client.get("http://app/v1/x").status_code == 200

        def call() -> None:
            with with_delegated_api_key_id("k"):
                assert client.get("http://app/v1/x").status_code == 200

        workers = [threading.Thread(target=call) for _ in range(50)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(WAIT)
        extra = set(threading.enumerate()) - before
        assert len(extra) <= 1 and all(t.name == "aibridge-transport-loop" for t in extra)
        client.close()  # a factory's client never stops the factory's loop
        assert len(loop_threads()) == 1
    assert set(threading.enumerate()) == before  # joined at exit


def test_bare_transport_close_stops_its_thread() -> None:
    before = set(threading.enumerate())
    with httpx.Client(transport=StreamingASGITransport(echo)) as client:
        assert client.get("http://app/").status_code == 200
        assert len(set(threading.enumerate()) - before) == 1
    assert set(threading.enumerate()) == before


def test_lifespan_through_the_sync_context_manager() -> None:
    events: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    scope["state"]["db"] = "ready"
                    events.append("startup")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    events.append("shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send(start())
        await send(chunk(scope["state"]["db"].encode(), more_body=False))

    before = set(threading.enumerate())
    with InProcessTransportFactory(app) as factory, with_delegated_api_key_id("k"):
        assert events == ["startup"]
        client = httpx.Client(transport=factory.transport_for("openai", Source.AGENTS))
        assert client.get("http://app/v1/x").text == "ready"
        client.close()  # a factory's client never ends the factory's lifespan
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]
    assert set(threading.enumerate()) == before


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_request_on_the_loop_thread_is_refused_not_deadlocked(backend: str) -> None:
    called = []
    outcome: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            called.append(scope)

    async def main() -> None:
        async with InProcessTransportFactory(app) as factory:
            client = httpx.Client(transport=factory.transport_for("openai", Source.AGENTS))
            with with_delegated_api_key_id("k"):
                try:
                    client.get("http://app/v1/x")  # noqa: ASYNC212 - the case under test
                except RuntimeError as exc:
                    outcome.append(exc)

    thread = threading.Thread(
        target=anyio.run, args=(main,), kwargs={"backend": backend}, daemon=True
    )
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "the sync request on the loop's own thread hung"
    assert len(outcome) == 1 and "async" in str(outcome[0])
    assert called == []


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_request_from_a_thread_running_another_loop_works(backend: str) -> None:
    results: list[bytes] = []
    with InProcessTransportFactory(echo) as factory:
        client = httpx.Client(transport=factory.transport_for("openai", Source.AGENTS))

        async def main() -> None:
            with with_delegated_api_key_id("k"):
                results.append(client.get("http://app/v1/x").content)  # noqa: ASYNC212

        thread = threading.Thread(target=anyio.run, args=(main,), kwargs={"backend": backend})
        thread.start()
        thread.join(WAIT)
        client.close()
    assert results == [b"/api/v2/aibridge/openai/v1/x|"]


@pytest.mark.anyio
async def test_async_entered_factory_serves_worker_threads() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            scope["state"]["loop"] = sniffio.current_async_library()
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send(start())
        await send(chunk(scope["state"]["loop"].encode()))
        await send(chunk(b"|" + sniffio.current_async_library().encode(), more_body=False))

    before = loop_threads()
    async with InProcessTransportFactory(app) as factory:
        transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")

        def call() -> bytes:
            with with_delegated_api_key_id("k"), httpx2.Client(transport=transport) as client:
                with client.stream("GET", "http://app/v1/x") as response:
                    return b"".join(response.iter_bytes())

        body = await anyio.to_thread.run_sync(call)
        assert loop_threads() == before  # served by this loop, no thread of its own
    library = sniffio.current_async_library().encode()
    assert body == library + b"|" + library


@pytest.mark.anyio
async def test_async_close_stops_the_loop_thread_a_sync_request_started() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(chunk(b"ok", more_body=False))

    before = loop_threads()
    factory = InProcessTransportFactory(app)  # not entered: a sync request starts its thread
    transport = factory.transport_for("openai", Source.AGENTS)

    def call() -> bytes:
        with with_delegated_api_key_id("k"), httpx.Client(transport=transport) as client:
            return client.get("http://app/v1/x").content

    assert await anyio.to_thread.run_sync(call) == b"ok"
    assert len(loop_threads()) == len(before) + 1
    await factory.aclose()
    assert loop_threads() == before


def test_raise_mode_exception_after_the_final_body_surfaces_at_close() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(chunk(b"first"))
        await send(chunk(b"", more_body=False))
        raise ValueError("after the response")

    with httpx.Client(transport=StreamingASGITransport(app), base_url="http://app") as client:
        response = client.send(client.build_request("GET", "/"), stream=True)
        iterator = response.iter_raw()
        assert next(iterator) == b"first"
        # httpx closes the response when its body ends: the close raises it.
        with pytest.raises(ValueError, match="after the response"):
            next(iterator)


@pytest.mark.anyio
async def test_the_loop_wake_used_by_readers_still_exists() -> None:
    # `call_soon` relies on the backend's scheduling hook behind anyio's public token.
    woken = anyio.Event()
    token = anyio.lowlevel.current_token()
    thread = threading.Thread(target=call_soon, args=(token, woken.set))
    thread.start()
    with anyio.fail_after(WAIT):
        await woken.wait()
    thread.join()


@pytest.mark.parametrize("flavor", ["httpx", "httpx2"])
def test_closing_the_transport_fails_a_request_waiting_for_its_start(flavor: str) -> None:
    arrived = threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        arrived.set()
        await anyio.sleep_forever()

    client, module, transport = make_client(f"bare-{flavor}", app)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.get("/")
        except Exception as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert arrived.wait(WAIT)
    transport.close()
    caller.join(WAIT)
    assert not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], module.RemoteProtocolError)
    assert loop_threads() == []


def test_strict_factory_raises_the_hidden_app_exception_at_exit() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raise ValueError("hidden by the 500")

    with pytest.raises(ValueError, match="hidden by the 500"):
        with InProcessTransportFactory(app, strict=True) as factory, with_delegated_api_key_id("k"):
            client = httpx.Client(transport=factory.transport_for("openai", Source.AGENTS))
            assert client.get("http://app/v1/x").status_code == 500
            client.close()
    assert loop_threads() == []


def test_headers_are_a_snapshot_of_the_start(kind: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"x-a", b"1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        headers.append((b"x-late", b"2"))  # after the start: never seen by the client
        await send(chunk(b"body", more_body=False))

    client, _, owner = make_client(kind, app)
    with client:
        response = client.get("/v1/x")
    owner.close()
    assert response.headers.multi_items() == [("x-a", "1")]


@pytest.mark.anyio
async def test_async_entered_bare_transport_serves_worker_threads_on_its_loop() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(chunk(sniffio.current_async_library().encode(), more_body=False))

    transport = StreamingASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as async_client:
        assert (await async_client.get("/")).status_code == 200

        def call() -> bytes:
            sync_client = httpx.Client(transport=transport, base_url="http://app")
            return sync_client.get("/").content  # not closed: that would close the transport

        body = await anyio.to_thread.run_sync(call)
        assert loop_threads() == []  # served by this loop: no thread of its own
    assert body == sniffio.current_async_library().encode()


def test_a_blocking_request_body_never_stalls_the_loop(kind: str) -> None:
    client, _, owner = make_client(kind, echo)
    first_sent = threading.Event()
    release = threading.Event()
    results: list[bytes] = []

    def upload() -> Iterator[bytes]:
        yield b"one "
        first_sent.set()
        release.wait(WAIT)  # blocks its own thread only
        yield b"two"

    def post() -> None:
        with with_delegated_api_key_id("key-sync"):
            results.append(client.post("/v1/up", content=upload()).content)

    poster = threading.Thread(target=post)
    poster.start()
    assert first_sent.wait(WAIT)
    # The app's loop is free: another request completes while the body generator blocks.
    assert client.get("/v1/other").content.endswith(b"|")
    assert results == []
    release.set()
    poster.join(WAIT)
    client.close()
    owner.close()
    assert results and results[0].endswith(b"|one two")


class BodyError(Exception):
    pass


def test_the_callers_failing_request_body_is_raised_to_the_caller(kind: str) -> None:
    client, _, owner = make_client(kind, echo)

    def upload() -> Iterator[bytes]:
        yield b"one "
        raise BodyError("the caller's own")

    with client, pytest.raises(BodyError, match="the caller's own"):
        client.post("/v1/up", content=upload())
    owner.close()
