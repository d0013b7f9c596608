"""What a test may read of a streaming transport: how many exchanges it still holds."""

from __future__ import annotations

from typing import Any

from .._transport import TransportCore

__all__ = ["live_exchanges", "wait_apps_ended"]


def _core(transport: object) -> TransportCore:
    if not isinstance(transport, TransportCore):
        raise TypeError(
            "expected a StreamingASGITransport (either flavour) or a transport from "
            f"InProcessTransportFactory.transport_for, got {type(transport).__name__}"
        )
    return transport


def _live(transport: object) -> list[Any]:
    core = _core(transport)
    runners = [core._engine, getattr(core, "_sync_engine", None)]  # async and sync requests
    return [exchange for runner in runners if runner is not None for exchange in runner.live]


def live_exchanges(transport: object) -> int:
    """How many exchanges `transport` still holds, for async and sync clients together.

    An exchange is live while its app runs, and after that until its caller has read the
    response to its end, closed it, or dropped it (behaviour §6). Zero once every response
    is done with: anything else is a leak.
    """
    return len(_live(transport))


async def wait_apps_ended(transport: object) -> None:
    """Wait until every app `transport` has started has returned.

    Apps whose caller left run on for the transport's `disconnect_grace` before they are
    cancelled, and apps whose response is complete run on to their end (behaviour §6); this
    waits for them, without closing anything.
    """
    for exchange in _live(transport):
        await exchange.wait_finished()
