from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import httpx
import pytest
from asgi import chunk, start

from aibridge_transport import (
    HTTPTransportFactory,
    InProcessTransportFactory,
    Source,
    TransportFactorySlot,
    with_delegated_api_key_id,
)
from aibridge_transport.types import Receive, Scope, Send

CALLS: list[str] = []


async def bridge(scope: Scope, receive: Receive, send: Send) -> None:
    CALLS.append(scope["path"])
    await send(start())
    await send(chunk(b"in-process", more_body=False))


async def other_bridge(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start(status=204))
    await send(chunk(b"", more_body=False))


def closed_port() -> int:
    # Bound but not listening: connecting is refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_empty_at_first() -> None:
    assert TransportFactorySlot().load() is None


def test_store_then_load() -> None:
    slot = TransportFactorySlot()
    factory = InProcessTransportFactory(bridge)
    slot.store(factory)
    assert slot.load() is factory
    slot.store(None)
    assert slot.load() is None


def test_register_in_memory_app_builds_and_stores_an_in_process_factory() -> None:
    slot = TransportFactorySlot()
    factory = slot.register_in_memory_app(bridge, strict=True)
    assert isinstance(factory, InProcessTransportFactory)
    assert factory.app is bridge
    assert factory.hidden_app_exceptions == []
    assert slot.load() is factory


def test_register_in_memory_app_replaces_an_in_process_factory() -> None:
    slot = TransportFactorySlot()
    first = slot.register_in_memory_app(bridge)
    second = slot.register_in_memory_app(other_bridge)
    assert second is not first
    assert slot.load() is second


def test_register_none_raises_value_error_and_keeps_the_slot() -> None:
    slot = TransportFactorySlot()
    factory = slot.register_in_memory_app(bridge)
    with pytest.raises(ValueError, match="must not be None"):
        slot.register_in_memory_app(None)
    assert slot.load() is factory


def test_standalone_factory_is_never_replaced(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aibridge_transport")
    slot = TransportFactorySlot()
    standalone = HTTPTransportFactory("http://127.0.0.1:9", "gateway-key")
    slot.store(standalone)
    assert slot.register_in_memory_app(bridge) is standalone
    assert slot.load() is standalone
    assert "in-memory bridge app is not registered" in caplog.text
    assert "gateway-key" not in caplog.text


@pytest.mark.anyio
async def test_failing_standalone_bridge_never_falls_back_to_in_process() -> None:
    CALLS.clear()
    slot = TransportFactorySlot()
    slot.store(HTTPTransportFactory(f"http://127.0.0.1:{closed_port()}", "gateway-key"))
    slot.register_in_memory_app(bridge)
    factory = slot.load()
    assert isinstance(factory, HTTPTransportFactory)
    async with factory:
        transport = factory.transport_for("openai", Source.AGENTS)
        with with_delegated_api_key_id("key-1"):
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                with pytest.raises(httpx.ConnectError):
                    await client.get("/v1/models")
    assert CALLS == []


def test_concurrent_registrations_never_displace_the_standalone_factory() -> None:
    slot = TransportFactorySlot()
    standalone = HTTPTransportFactory("http://127.0.0.1:9", "gateway-key")
    start = threading.Barrier(9)
    loaded: list[Any] = []
    registered: list[list[Any]] = [[] for _ in range(4)]

    def register(results: list[Any]) -> None:
        start.wait()
        for _ in range(200):
            results.append(slot.register_in_memory_app(bridge))

    def store_standalone() -> None:
        start.wait()
        slot.store(standalone)

    def load() -> None:
        start.wait()
        for _ in range(200):
            loaded.append(slot.load())

    threads = [threading.Thread(target=register, args=(results,)) for results in registered]
    threads += [threading.Thread(target=load) for _ in range(4)]
    threads.append(threading.Thread(target=store_standalone))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert slot.load() is standalone
    assert all(
        factory is None or isinstance(factory, InProcessTransportFactory) or factory is standalone
        for factory in loaded
    )
    for results in registered:
        # Once a registration has met the standalone factory, every later one returns it.
        first = next((i for i, f in enumerate(results) if f is standalone), len(results))
        assert all(f is standalone for f in results[first:])
        assert all(isinstance(f, InProcessTransportFactory) for f in results[:first])


def test_check_then_store_is_atomic() -> None:
    # Registrations race one store of a standalone factory: a registration that checked the
    # slot before the store must not overwrite it after, so the standalone one always stays.
    for _ in range(50):
        slot = TransportFactorySlot()
        standalone = HTTPTransportFactory("http://127.0.0.1:9", "gateway-key")
        start = threading.Barrier(5)

        def register(slot: TransportFactorySlot = slot, start: threading.Barrier = start) -> None:
            start.wait()
            slot.register_in_memory_app(bridge)

        def store(
            slot: TransportFactorySlot = slot,
            start: threading.Barrier = start,
            standalone: HTTPTransportFactory = standalone,
        ) -> None:
            start.wait()
            slot.store(standalone)

        threads = [threading.Thread(target=register) for _ in range(4)]
        threads.append(threading.Thread(target=store))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert slot.load() is standalone
