"""Property-based fuzzing of sync consumers (behaviour §12): scripted apps, scripted readers.

Each example plays one generated app script (chunks, checkpoints, and an ending) against one
generated sync consumer (read all, read some then close, close from another thread, abandon,
time out) through a bare transport (raise mode) or a factory's (500 mode), on both flavours.
Whatever happens, no reader hangs, only the flavour's exceptions, the library's and the app's
own come out, and once the owner is closed no courier, exchange or thread is left.
"""

from __future__ import annotations

import gc
import os
import threading
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aibridge_transport import (
    AIBridgeTransportError,
    InProcessTransportFactory,
    Source,
    StreamingASGITransport,
    with_delegated_api_key_id,
)
from aibridge_transport._sync import _RUNNING
from aibridge_transport.httpx2 import StreamingASGITransport as StreamingASGITransport2
from aibridge_transport.testing import live_exchanges
from aibridge_transport.types import Receive, Scope, Send

EXAMPLES = int(os.environ.get("AIBRIDGE_FUZZ_EXAMPLES", "60"))
DEADLINE = 10.0  # an example that takes longer is stuck: a bug, never a slow machine
ENDINGS = ["complete", "raise_before", "raise_after", "incomplete", "hang", "complete_then_raise"]
ACTIONS = ["read_all", "read_some_close", "close_from_thread", "abandon", "timeout"]
KINDS = ["bare-httpx", "bare-httpx2", "factory-httpx", "factory-httpx2"]


class FuzzAppError(Exception):
    pass


@dataclass(frozen=True)
class AppScript:
    chunks: tuple[bytes, ...]
    checkpoints: bool
    ending: str


@dataclass(frozen=True)
class Consumer:
    action: str
    reads: int


def scripted(script: AppScript) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if script.ending == "raise_before":
            raise FuzzAppError("before")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in script.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if script.checkpoints:
                await anyio.lowlevel.checkpoint()
        if script.ending == "raise_after":
            raise FuzzAppError("after")
        if script.ending == "incomplete":
            return
        if script.ending == "hang":
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if script.ending == "complete_then_raise":
            raise FuzzAppError("after the end")

    return app


def make(kind: str, app: Any) -> tuple[Any, Any, Any, Any]:
    """(client, module, owner, transport)."""
    flavor = "httpx2" if kind.endswith("httpx2") else "httpx"
    module: Any = httpx2 if flavor == "httpx2" else httpx
    if kind.startswith("bare"):
        bare = StreamingASGITransport2 if flavor == "httpx2" else StreamingASGITransport
        transport = bare(app, disconnect_grace=0.02)
        owner: Any = transport
    else:
        owner = InProcessTransportFactory(app, disconnect_grace=0.02)
        transport = owner.transport_for("openai", Source.AGENTS, flavor=flavor)
    return module.Client(transport=transport, base_url="http://app"), module, owner, transport


def consume(client: Any, module: Any, consumer: Consumer, script: AppScript) -> list[bytes]:
    timeout = module.Timeout(5.0, read=0.05 if consumer.action == "timeout" else 5.0)
    request = client.build_request("GET", "/v1/x", timeout=timeout)
    response = client.send(request, stream=True)
    received: list[bytes] = []
    iterator = response.iter_raw()
    if consumer.action == "abandon":
        for _ in range(min(consumer.reads, 1)):
            received.extend(next(iterator, b"") for _ in range(1))
        del response, iterator
        gc.collect()
        return received
    if consumer.action == "close_from_thread":

        def close() -> None:
            try:
                response.close()
            except FuzzAppError:
                pass  # raise mode: the app's late exception surfaces at close (behaviour §7)

        closer = threading.Thread(target=close)
        reader_done = threading.Event()

        def read() -> None:
            try:
                for chunk in iterator:
                    received.append(chunk)
            except (module.StreamClosed, module.HTTPError, FuzzAppError):
                pass
            finally:
                reader_done.set()

        reader = threading.Thread(target=read)
        reader.start()
        closer.start()
        closer.join(DEADLINE)
        assert reader_done.wait(DEADLINE), "a reader blocked in another thread did not end"
        reader.join(DEADLINE)
        return received
    try:
        for count, chunk in enumerate(iterator):
            received.append(chunk)
            if consumer.action == "read_some_close" and count + 1 >= consumer.reads:
                break
    finally:
        response.close()
    return received


def allowed(exc: BaseException, module: Any) -> bool:
    return isinstance(exc, module.HTTPError | module.StreamClosed | FuzzAppError) or isinstance(
        exc, AIBridgeTransportError
    )


def play(kind: str, script: AppScript, consumer: Consumer) -> None:
    before = set(threading.enumerate())
    client, module, owner, transport = make(kind, scripted(script))
    outcome: list[object] = []

    def run() -> None:
        with with_delegated_api_key_id("fuzz"):
            try:
                outcome.append(consume(client, module, consumer, script))
            except BaseException as exc:
                outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(DEADLINE)
    assert not worker.is_alive(), f"stuck: {kind} {script} {consumer}"
    try:
        client.close()
        owner.close()
    except FuzzAppError:
        pass  # raise mode: an exception after the end surfaces at close (behaviour §7)
    [result] = outcome
    if isinstance(result, BaseException):
        assert allowed(result, module), repr(result)
    elif consumer.action == "read_all" and script.ending in ("complete", "complete_then_raise"):
        assert isinstance(result, list)
        if kind.startswith("factory") or script.ending == "complete":
            assert b"".join(result) == b"".join(script.chunks)
    assert live_exchanges(transport) == 0
    assert set(threading.enumerate()) <= before


@st.composite
def app_scripts(draw: st.DrawFn) -> AppScript:
    sizes = draw(st.lists(st.integers(0, 3000), max_size=6))
    chunks = tuple(bytes([65 + index % 26]) * size for index, size in enumerate(sizes))
    return AppScript(chunks, draw(st.booleans()), draw(st.sampled_from(ENDINGS)))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(KINDS),
    script=app_scripts(),
    consumer=st.builds(Consumer, st.sampled_from(ACTIONS), st.integers(1, 4)),
)
def test_scripted_app_against_a_scripted_sync_consumer(
    kind: str, script: AppScript, consumer: Consumer
) -> None:
    if script.ending == "hang" and consumer.action == "read_all":
        consumer = Consumer("timeout", consumer.reads)  # a server would wait forever too
    if (kind, script.ending, consumer.action) == ("bare-httpx2", "complete_then_raise", "abandon"):
        # httpx2 closes a response when the collector finalizes its dropped iterator, and in
        # raise mode that close raises the app's late exception (behaviour §7): inside a
        # finalizer, where nothing can catch it. Not the transport's to change.
        consumer = Consumer("read_some_close", consumer.reads)
    play(kind, script, consumer)


@pytest.fixture(autouse=True)
def _no_courier_left() -> Any:
    yield
    assert _RUNNING == set()
