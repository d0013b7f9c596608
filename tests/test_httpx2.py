"""Behaviour §2: the httpx2 flavour gives httpx2 responses, streams and exceptions."""

from __future__ import annotations

import anyio
import httpx
import httpx2
import pytest
from asgi import chunk, start

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.httpx2 import StreamingASGITransport
from aibridge_transport.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio


class LockStep:
    def __init__(self, count: int) -> None:
        self.count = count
        self.acks_send, self.acks = anyio.create_memory_object_stream[None](count)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        with self.acks:
            for index in range(self.count):
                await send(chunk(b"%d" % index))
                await self.acks.receive()
        await send(chunk(b"", more_body=False))


async def crash_mid_stream(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start())
    await send(chunk(b"partial"))
    raise ValueError("mid-stream")


async def stall(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start())
    await anyio.sleep_forever()


async def test_httpx2_client_streams_in_lock_step() -> None:
    app = LockStep(4)
    received = []
    async with httpx2.AsyncClient(transport=StreamingASGITransport(app=app)) as client:
        async with client.stream("GET", "http://app/") as response:
            assert isinstance(response, httpx2.Response)
            with app.acks_send:
                async for data in response.aiter_raw():
                    received.append(data)
                    await app.acks_send.send(None)
    assert received == [b"0", b"1", b"2", b"3"]


async def test_factory_httpx2_transport_streams() -> None:
    factory = InProcessTransportFactory(LockStep(2))
    transport = factory.transport_for("anthropic", Source.AGENTS, flavor="httpx2")
    app = factory.app
    assert isinstance(app, LockStep)
    with with_delegated_api_key_id("key-1"):
        async with httpx2.AsyncClient(transport=transport) as client:
            async with client.stream("POST", "http://aibridge/v1/messages") as response:
                with app.acks_send:
                    received = []
                    async for data in response.aiter_raw():
                        received.append(data)
                        await app.acks_send.send(None)
    assert received == [b"0", b"1"]


async def test_mid_stream_crash_is_an_httpx2_protocol_error() -> None:
    # 500 mode; raise mode raises the app's own exception (behaviour §7).
    transport = StreamingASGITransport(app=crash_mid_stream, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport) as client:
        async with client.stream("GET", "http://app/") as response:
            iterator = response.aiter_raw()
            assert await anext(iterator) == b"partial"
            with pytest.raises(httpx2.RemoteProtocolError) as info:
                await anext(iterator)
    assert not isinstance(info.value, httpx.HTTPError)
    assert isinstance(info.value.__cause__, ValueError)


async def test_read_timeout_is_an_httpx2_timeout() -> None:
    transport = StreamingASGITransport(app=stall, disconnect_grace=0.01)
    async with httpx2.AsyncClient(transport=transport, timeout=0.05) as client:
        async with client.stream("GET", "http://app/") as response:
            with pytest.raises(httpx2.ReadTimeout) as info:
                await response.aread()
    assert not isinstance(info.value, httpx.HTTPError)


async def test_500_mode_with_httpx2() -> None:
    async def raises(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("boom")

    factory = InProcessTransportFactory(raises)
    transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
    with with_delegated_api_key_id("key-1"):
        async with httpx2.AsyncClient(transport=transport) as client:
            response = await client.get("http://aibridge/v1/models")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
