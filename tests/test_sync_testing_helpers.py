"""Behaviour §12: the testing helpers work from any thread and any loop, including loops that
have since ended, and sync tests have blocking counterparts with timeouts."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import httpx
import pytest
from test_sync_transport import WAIT, chunk, start

from aibridge_transport import (
    InProcessTransportFactory,
    Source,
    StreamingASGITransport,
    with_delegated_api_key_id,
)
from aibridge_transport.testing import (
    FakeAIBridge,
    Reply,
    TokenGate,
    live_exchanges,
    wait_apps_ended,
    wait_apps_ended_sync,
)
from aibridge_transport.types import Receive, Scope, Send

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}


def run_loop_in_thread(main: Any, backend: str) -> None:
    """Run `main` on a loop of its own in another thread, to its end."""
    thread = threading.Thread(target=anyio.run, args=(main,), kwargs={"backend": backend})
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_wait_for_request_given_up_on_an_ended_loop_leaves_no_trace(backend: str) -> None:
    bridge = FakeAIBridge()

    async def give_up() -> None:
        with anyio.move_on_after(0):
            await bridge.wait_for_request()

    run_loop_in_thread(give_up, backend)
    with InProcessTransportFactory(bridge) as factory, with_delegated_api_key_id("key"):
        client = httpx.Client(transport=factory.transport_for("openai", Source.AGENTS))
        response = client.post("http://bridge/v1/chat/completions", json=CHAT)
        assert response.status_code == 200  # waking the ended loop's waiter failed it: a 500
        assert bridge.wait_for_request_sync(timeout=WAIT).outcome == "completed"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_token_gate_release_after_the_waiters_loop_ended(backend: str) -> None:
    gate = TokenGate()

    async def give_up() -> None:
        with anyio.move_on_after(0):
            await gate.wait()

    run_loop_in_thread(give_up, backend)
    gate.release()  # must not fail the releasing test
    assert gate.released == 1


class EndsWhenReleased:
    """Completes its response, then runs on (a background task) until `release` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.ended = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(chunk(b"done", more_body=False))
        await anyio.to_thread.run_sync(self.release.wait, abandon_on_cancel=True)
        self.ended.set()


async def test_wait_apps_ended_for_a_sync_clients_app(anyio_backend: str) -> None:
    app = EndsWhenReleased()
    transport = StreamingASGITransport(app)

    def request() -> bytes:
        return httpx.Client(transport=transport).get("http://app/").content

    assert await anyio.to_thread.run_sync(request) == b"done"
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(anyio.to_thread.run_sync, app.release.set)
        with anyio.fail_after(WAIT):
            await wait_apps_ended(transport)  # on this loop; the app ran on the loop thread
    assert app.ended.is_set()
    await anyio.to_thread.run_sync(transport.close)


def test_blocking_counterparts_for_sync_tests() -> None:
    gate = TokenGate()
    bridge = FakeAIBridge(Reply(text="one two", gate=gate))
    with InProcessTransportFactory(bridge) as factory, with_delegated_api_key_id("key"):
        transport = factory.transport_for("openai", Source.AGENTS)
        client = httpx.Client(transport=transport)
        body = {**CHAT, "stream": True}
        with client.stream("POST", "http://bridge/v1/chat/completions", json=body) as response:
            record = bridge.wait_for_request_sync(timeout=WAIT)
            assert record.outcome == "running"
            with pytest.raises(TimeoutError):
                record.wait_ended_sync(timeout=0.01)
            gate.release(2)
            response.read()
        assert record.wait_ended_sync(timeout=WAIT) == "completed"
        wait_apps_ended_sync(transport, timeout=WAIT)
        assert live_exchanges(transport) == 0
        with pytest.raises(TimeoutError):
            bridge.wait_for_request_sync(2, timeout=0.01)
