"""`aibridge_transport.testing.live_exchanges` and `wait_apps_ended`, the soak's yardsticks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from asgi import chunk, start, wait_for_disconnect

from aibridge_transport import (
    InProcessTransportFactory,
    Source,
    StreamingASGITransport,
    with_delegated_api_key_id,
)
from aibridge_transport.testing import live_exchanges, wait_apps_ended
from aibridge_transport.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio

ENDED: list[str] = []


async def streams_until_disconnected(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start())
    await send(chunk(b"first"))
    await wait_for_disconnect(receive)
    ENDED.append(scope["path"])


@pytest.fixture(params=["generic", "factory"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "generic":
        yield StreamingASGITransport(app=streams_until_disconnected)
        return
    factory = InProcessTransportFactory(streams_until_disconnected)
    yield factory.transport_for("openai", Source.AGENTS)
    await factory.aclose()


async def test_an_open_response_is_live_until_closed(transport: Any) -> None:
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        assert live_exchanges(transport) == 0
        with with_delegated_api_key_id("key-1"):
            async with client.stream("GET", "/v1/models") as response:
                assert await anext(response.aiter_raw()) == b"first"
                assert live_exchanges(transport) == 1
        with anyio.fail_after(5):
            await wait_apps_ended(transport)
        assert live_exchanges(transport) == 0
    assert ENDED[-1].endswith("/v1/models")


async def test_wait_apps_ended_waits_out_the_disconnect_grace() -> None:
    running = anyio.Event()

    async def ignores_the_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(chunk(b"first"))
        running.set()
        try:
            await anyio.sleep_forever()
        finally:
            ENDED.append("cancelled after the grace")

    transport = StreamingASGITransport(app=ignores_the_disconnect, disconnect_grace=0.01)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        async with client.stream("GET", "/") as response:
            await anext(response.aiter_raw())
        await running.wait()
        with anyio.fail_after(5):
            await wait_apps_ended(transport)
        assert ENDED[-1] == "cancelled after the grace"
        assert live_exchanges(transport) == 0


def test_anything_else_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"StreamingASGITransport.*got AsyncHTTPTransport"):
        live_exchanges(httpx.AsyncHTTPTransport())
