"""What the SDK tests share: no network, and clients wired to a `FakeAIBridge`."""

from __future__ import annotations

import socket
from typing import Any, Literal

import httpx
import httpx2
import pytest

from aibridge_transport import InProcessTransportFactory, Source

__all__ = ["KEY_ID", "Flavour", "fast_retries", "forbid_network", "http_client"]

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
