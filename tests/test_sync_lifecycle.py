"""Behaviour §12: the life of a sync loop thread (exit, collection, fork, the caller's
timeouts, the serving loop's own thread, after the serving loop ended, the same bounds).

Exit and fork cases run in a subprocess with a hard deadline: a regression fails, never hangs.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import httpx2
import pytest
from asgi import wait_for_disconnect
from test_sync_transport import KINDS, WAIT, chunk, loop_threads, make_client, start

from aibridge_transport import (
    InProcessTransportFactory,
    Source,
    StreamingASGITransport,
    with_delegated_api_key_id,
)
from aibridge_transport.httpx2 import StreamingASGITransport as StreamingASGITransport2
from aibridge_transport.types import Receive, Scope, Send

FLAVORS = ["httpx", "httpx2"]
DEADLINE = 30.0  # a subprocess that has not exited by then hangs: the test fails


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> Any:
    with with_delegated_api_key_id("key-sync"):
        yield str(request.param)


def run_script(body: str, flavor: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        """
        import {flavor} as module
        from aibridge_transport import (
            InProcessTransportFactory, Source, with_delegated_api_key_id,
        )
        from aibridge_transport import StreamingASGITransport
        from aibridge_transport.httpx2 import StreamingASGITransport as StreamingASGITransport2

        BARE = StreamingASGITransport2 if "{flavor}" == "httpx2" else StreamingASGITransport

        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            await send({{"type": "http.response.start", "status": 200, "headers": []}})
            await send({{"type": "http.response.body", "body": b"ok"}})

        """
    ).format(flavor=flavor) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


EXIT_SCRIPTS = {
    "module-level factory, never closed": """
        factory = InProcessTransportFactory(app)
        transport = factory.transport_for("openai", Source.AGENTS, flavor="{flavor}")
        with with_delegated_api_key_id("key"):
            print(module.Client(transport=transport).get("http://x/v1").text)
        """,
    "client on a bare transport, never closed": """
        client = module.Client(transport=BARE(app))
        print(client.get("http://x/").text)
        """,
    "a request after the factory's with block": """
        with InProcessTransportFactory(app) as factory:
            transport = factory.transport_for("openai", Source.AGENTS, flavor="{flavor}")
        with with_delegated_api_key_id("key"):
            print(module.Client(transport=transport).get("http://x/v1").text)
        """,
    "an app blocking its loop thread at exit": """
        import threading
        import anyio.lowlevel
        never = threading.Event()

        async def blocking(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok", "more_body": True})
            await anyio.lowlevel.checkpoint()  # the response goes out
            never.wait()  # blocks the loop thread for good

        client = module.Client(transport=BARE(blocking))
        response = client.send(client.build_request("GET", "http://x/"), stream=True)
        chunks = response.iter_raw()  # kept: closed only at exit, with the loop still blocked
        print(next(chunks).decode())
        """,
}


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("case", list(EXIT_SCRIPTS))
def test_process_exits_with_a_loop_thread_never_closed(case: str, flavor: str) -> None:
    result = run_script(EXIT_SCRIPTS[case].replace("{flavor}", flavor), flavor)
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


class BlockAfterResponse:
    """Completes its response; once told to `block`, blocks its loop thread until `release`."""

    def __init__(self) -> None:
        self.block = threading.Event()
        self.blocking = threading.Event()
        self.release = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send(start())
        await send(chunk(b"done", more_body=False))
        await anyio.to_thread.run_sync(self.block.wait, abandon_on_cancel=True)
        self.blocking.set()
        self.release.wait(WAIT)  # blocking work on the loop thread, as a sync library does


@pytest.mark.parametrize("owner_kind", ["bare-httpx", "bare-httpx2", "factory"])
def test_a_collected_owner_stops_its_thread_without_joining(owner_kind: str) -> None:
    app = BlockAfterResponse()
    before = set(loop_threads())
    owner: Any
    if owner_kind == "factory":
        owner = InProcessTransportFactory(app)
        client: Any = httpx.Client(transport=owner.transport_for("openai", Source.AGENTS))
    else:
        bare = StreamingASGITransport2 if owner_kind.endswith("2") else StreamingASGITransport
        owner = bare(app)
        client = (httpx2 if owner_kind.endswith("2") else httpx).Client(transport=owner)
    with with_delegated_api_key_id("key"):
        assert client.get("http://app/v1/x").text == "done"
    (thread,) = set(loop_threads()) - before
    app.block.set()
    assert app.blocking.wait(WAIT)
    owned = [owner, client]
    del owner, client

    def drop() -> None:
        owned.clear()
        gc.collect()

    # The owner is released, and its finalizer runs, in this helper thread; a join there
    # would wait for the blocked loop thread, so the helper would still be alive.
    collector = threading.Thread(target=drop)
    collector.start()
    collector.join(WAIT / 2)
    collected_without_waiting = not collector.is_alive()
    app.release.set()
    collector.join(WAIT)
    assert collected_without_waiting
    thread.join(WAIT)  # the signal stopped it once the app let the loop go
    assert not thread.is_alive()


FORK_SCRIPT = """
    import os
    import threading

    factory = InProcessTransportFactory(app)
    transport = factory.transport_for("openai", Source.AGENTS, flavor="{flavor}")
    client = module.Client(transport=transport)
    with with_delegated_api_key_id("key"):
        assert client.get("http://x/v1").text == "ok"  # the parent's loop thread runs
        pid = os.fork()
        if pid == 0:
            try:
                ok = client.get("http://x/v1", timeout=5.0).text == "ok"
                names = [t.name for t in threading.enumerate()]
                ok = ok and names.count("aibridge-transport-loop") == 1
            except BaseException:
                ok = False
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        assert client.get("http://x/v1").text == "ok"  # the parent's goes on
    factory.close()
    """


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_forked_child_starts_a_loop_thread_of_its_own(flavor: str) -> None:
    result = run_script(FORK_SCRIPT.replace("{flavor}", flavor), flavor)
    assert (result.returncode, result.stdout.strip()) == (0, "child 0"), result.stderr


class Blocking:
    """Blocks its loop thread (a blocking call in the app) until `release` is set."""

    def __init__(self, *, after_start: bool) -> None:
        self.after_start = after_start
        self.release = threading.Event()
        self.unblocked = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.after_start:
            await send(start())
            await send(chunk(b"first"))
            await anyio.lowlevel.checkpoint()  # the first chunk goes out
        self.release.wait(WAIT)
        self.unblocked.set()
        await wait_for_disconnect(receive)


@pytest.mark.parametrize("after_start", [False, True], ids=["start", "body"])
def test_read_timeout_fires_while_the_app_blocks_its_loop(kind: str, after_start: bool) -> None:
    app = Blocking(after_start=after_start)
    client, module, owner = make_client(kind, app)
    timeout = module.Timeout(WAIT, read=0.2)
    try:
        with pytest.raises(module.ReadTimeout):
            with client.stream("GET", "/v1/x", timeout=timeout) as response:
                chunks = response.iter_raw()
                assert next(chunks) == b"first"
                next(chunks)
        # Timed in the calling thread: the app still blocks its loop (behaviour §12).
        assert not app.unblocked.is_set()
    finally:
        app.release.set()
    client.close()
    owner.close()


class FirstThenDisconnect:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send(start())
        await send(chunk(b"first"))
        await wait_for_disconnect(receive)


async def test_reading_on_the_serving_loops_thread_raises_at_once(
    anyio_backend: str,
) -> None:
    app = FirstThenDisconnect()
    factory = InProcessTransportFactory(app)
    async with factory:

        def open_stream() -> Any:
            with with_delegated_api_key_id("key"):
                client = httpx.Client(transport=factory.transport_for("openai", Source.AGENTS))
                request = client.build_request("GET", "http://app/v1/x")
                return client.send(request, stream=True)

        # Sent from a worker thread; read back here, on the thread whose loop serves it.
        response = await anyio.to_thread.run_sync(open_stream)
        with pytest.raises(RuntimeError, match="async"):
            next(response.iter_raw())
        await anyio.to_thread.run_sync(response.close)


class ManyChunks:
    """More chunks than the buffers hold, then waits for the client to leave."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send(start())
        for _ in range(40):
            await send(chunk(b"x"))
        await wait_for_disconnect(receive)


def read_rest(iterator: Any) -> BaseException:
    try:
        for _ in iterator:
            pass
    except BaseException as exc:
        return exc
    raise AssertionError("the body ended cleanly although its loop was gone")


def assert_flavours_own(error: BaseException, module: Any) -> None:
    assert type(error).__module__.split(".")[0] == module.__name__, repr(error)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_reading_after_the_factory_closed_gives_the_flavours_error(flavor: str) -> None:
    module: Any = httpx2 if flavor == "httpx2" else httpx
    factory = InProcessTransportFactory(ManyChunks(), max_buffered_chunks=2)
    transport = factory.transport_for("openai", Source.AGENTS, flavor=flavor)  # type: ignore[call-overload]
    client = module.Client(transport=transport)
    with with_delegated_api_key_id("key"):
        response = client.send(client.build_request("GET", "http://app/v1/x"), stream=True)
    iterator = response.iter_raw()
    assert next(iterator) == b"x"
    factory.close()
    assert_flavours_own(read_rest(iterator), module)
    response.close()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_reading_after_the_bare_transport_closed_gives_the_flavours_error(flavor: str) -> None:
    module: Any = httpx2 if flavor == "httpx2" else httpx
    bare = StreamingASGITransport2 if flavor == "httpx2" else StreamingASGITransport
    client = module.Client(transport=bare(ManyChunks(), max_buffered_chunks=2))
    response = client.send(client.build_request("GET", "http://app/"), stream=True)
    iterator = response.iter_raw()
    assert next(iterator) == b"x"
    client.close()
    assert_flavours_own(read_rest(iterator), module)
    response.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("flavor", FLAVORS)
def test_reading_after_the_serving_async_with_ended_gives_the_flavours_error(
    flavor: str, backend: str
) -> None:
    module: Any = httpx2 if flavor == "httpx2" else httpx
    factory = InProcessTransportFactory(ManyChunks(), max_buffered_chunks=2)
    transport = factory.transport_for("openai", Source.AGENTS, flavor=flavor)  # type: ignore[call-overload]
    client = module.Client(transport=transport)
    served: list[Any] = []

    async def serve() -> None:
        async with factory:

            def open_stream() -> None:
                with with_delegated_api_key_id("key"):
                    request = client.build_request("GET", "http://app/v1/x")
                    response = client.send(request, stream=True)
                    iterator = response.iter_raw()
                    assert next(iterator) == b"x"
                    served.extend((response, iterator))

            await anyio.to_thread.run_sync(open_stream)

    loop = threading.Thread(target=anyio.run, args=(serve,), kwargs={"backend": backend})
    loop.start()
    loop.join(WAIT)
    assert not loop.is_alive()
    response, iterator = served
    assert_flavours_own(read_rest(iterator), module)
    response.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_request_to_a_loop_that_has_ended_gives_the_flavours_error(
    flavor: str, backend: str
) -> None:
    module: Any = httpx2 if flavor == "httpx2" else httpx
    factory = InProcessTransportFactory(ManyChunks())
    transport = factory.transport_for("openai", Source.AGENTS, flavor=flavor)  # type: ignore[call-overload]

    async def enter_and_end() -> None:
        await factory.__aenter__()  # never left: its loop ends while entered

    loop = threading.Thread(target=anyio.run, args=(enter_and_end,), kwargs={"backend": backend})
    loop.start()
    loop.join(WAIT)
    assert not loop.is_alive()
    with with_delegated_api_key_id("key"), pytest.raises(module.RemoteProtocolError):
        module.Client(transport=transport).get("http://app/v1/x")
