"""What the SDK tests share: no network, and SDK clients wired to a `FakeAIBridge`."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import anthropic
import anyio
import httpx
import httpx2
import openai
import pytest

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import FakeAIBridge, RecordedRequest

__all__ = [
    "KEY_ID",
    "UNEXHAUSTED_SSE",
    "FakeClients",
    "Flavour",
    "SDKSetup",
    "anthropic_client",
    "ended",
    "fake_clients",
    "fast_retries",
    "forbid_network",
    "http_client",
    "openai_client",
]

Flavour = Literal["httpx", "httpx2"]

KEY_ID = "key-7f3a"

# openai leaves its SSE generators unexhausted when it stops at `[DONE]` or the caller leaves a
# stream; trio's async generator finalizer warns where asyncio's stays silent.
UNEXHAUSTED_SSE = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object "
    r"(SSEDecoder|AsyncStream)\."
    r":pytest.PytestUnraisableExceptionWarning"
)


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
        transport2 = factory.transport_for(provider, Source.AGENTS, flavor="httpx2")
        return httpx2.AsyncClient(transport=transport2, event_hooks=hooks, **options)
    transport = factory.transport_for(provider, Source.AGENTS)
    return httpx.AsyncClient(transport=transport, event_hooks=hooks, **options)


def openai_client(
    http_client: httpx.AsyncClient | httpx2.AsyncClient,
    *,
    base_url: str = "http://bridge.invalid/v1",
    max_retries: int = 0,
    **options: Any,
) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-test-secret",
        base_url=base_url,
        max_retries=max_retries,
        http_client=http_client,  # type: ignore[arg-type]
        **options,
    )


def anthropic_client(
    http_client: httpx2.AsyncClient,
    *,
    base_url: str = "http://bridge.invalid",
    max_retries: int = 0,
    **options: Any,
) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="sk-ant-test-secret",
        base_url=base_url,
        max_retries=max_retries,
        http_client=http_client,
        **options,
    )


async def ended(record: RecordedRequest) -> str:
    # A bound on a wait that ends on its own, so a regression fails instead of hanging.
    with anyio.fail_after(5):
        return await record.wait_ended()


@dataclass
class SDKSetup:
    """A bridge, its factory, and SDK clients of `flavour` that retry 5xx at once."""

    bridge: FakeAIBridge
    factory: InProcessTransportFactory
    flavour: Flavour = "httpx2"

    @classmethod
    def new(cls, flavour: Flavour = "httpx2") -> SDKSetup:
        bridge = FakeAIBridge()
        return cls(bridge, InProcessTransportFactory(bridge), flavour)

    def openai(
        self,
        *,
        base_url: str = "http://bridge.invalid/v1",
        max_retries: int = 0,
        timeout: float = 10.0,
    ) -> openai.AsyncOpenAI:
        client = http_client(self.factory, "openai", self.flavour)
        return openai_client(client, base_url=base_url, max_retries=max_retries, timeout=timeout)

    def anthropic(
        self,
        *,
        base_url: str = "http://bridge.invalid",
        max_retries: int = 0,
        timeout: float = 10.0,
    ) -> anthropic.AsyncAnthropic:
        # anthropic refuses an httpx client: always httpx2.
        client: Any = http_client(self.factory, "anthropic", "httpx2")
        return anthropic_client(client, base_url=base_url, max_retries=max_retries, timeout=timeout)

    @property
    def remote_protocol_error(self) -> type[Exception]:
        return httpx2.RemoteProtocolError if self.flavour == "httpx2" else httpx.RemoteProtocolError


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
        return openai_client(httpx2.AsyncClient(transport=self.transport(provider)), **options)

    def anthropic(self, provider: str = "anthropic", **options: Any) -> anthropic.AsyncAnthropic:
        client = httpx2.AsyncClient(transport=self.transport(provider))
        return anthropic_client(client, **options)

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
