"""What the SDK tests share: no network, and clients wired to a `FakeAIBridge`."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import anthropic
import httpx
import httpx2
import openai
import pytest

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import FakeAIBridge

__all__ = [
    "KEY_ID",
    "FakeClients",
    "Flavour",
    "fake_clients",
    "fast_retries",
    "forbid_network",
    "http_client",
]

Flavour = Literal["httpx", "httpx2"]

KEY_ID = "key-7f3a"


def forbid_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any outgoing connection fail, so a test that would reach the network errs."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access is forbidden in these tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


async def fast_retries(response: httpx.Response | httpx2.Response) -> None:
    """Ask the SDK to retry a 5xx after 1 ms instead of its 0.5 s backoff.

    The transport's own 500 (an app that crashed before responding) carries no retry
    headers; the SDKs honour `retry-after-ms` from the response they were handed.
    """
    if response.status_code >= 500:
        response.headers["retry-after-ms"] = "1"


def http_client(
    factory: InProcessTransportFactory, provider: str, flavour: Flavour, **options: Any
) -> httpx.AsyncClient | httpx2.AsyncClient:
    """A client of `flavour` whose transport runs the bridge in process."""
    hooks = {"response": [fast_retries]}
    if flavour == "httpx2":
        transport = factory.transport_for(provider, Source.AGENTS, flavor="httpx2")
        return httpx2.AsyncClient(transport=transport, event_hooks=hooks, **options)
    transport = factory.transport_for(provider, Source.AGENTS)
    return httpx.AsyncClient(transport=transport, event_hooks=hooks, **options)


@dataclass
class FakeClients:
    """SDK clients of each provider wired to one `FakeAIBridge`, without retries.

    The async clients use httpx2 (anthropic refuses httpx); a sync variant would add
    `openai_sync()` / `anthropic_sync()` beside them.
    """

    bridge: FakeAIBridge
    factory: InProcessTransportFactory

    def transport(self, provider: str) -> httpx2.AsyncBaseTransport:
        transport: httpx2.AsyncBaseTransport
        transport = self.factory.transport_for(provider, Source.AGENTS, flavor="httpx2")
        return transport

    def openai(self, provider: str = "openai", **options: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key="sk-test-secret",
            base_url="http://bridge.invalid/v1",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=self.transport(provider)),
            **options,
        )

    def anthropic(self, provider: str = "anthropic", **options: Any) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key="sk-ant-test-secret",
            base_url="http://bridge.invalid",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=self.transport(provider)),
            **options,
        )

    def raw(self, provider: str) -> httpx2.AsyncClient:
        """A plain client for what the SDKs never send (a body that is not JSON)."""
        return httpx2.AsyncClient(transport=self.transport(provider), base_url="http://bridge")


@asynccontextmanager
async def fake_clients(bridge: FakeAIBridge | None = None) -> AsyncIterator[FakeClients]:
    """A bridge (a new one unless given) and its clients, with the delegated key id set."""
    bridge = bridge if bridge is not None else FakeAIBridge()
    async with InProcessTransportFactory(bridge) as factory:
        with with_delegated_api_key_id(KEY_ID):
            yield FakeClients(bridge, factory)
