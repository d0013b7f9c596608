"""What a test may read of a streaming transport: how many exchanges it still holds."""

from __future__ import annotations

from .._adapter import TransportCore

__all__ = ["live_exchanges", "wait_apps_ended"]


def _core(transport: object) -> TransportCore:
    if not isinstance(transport, TransportCore):
        raise TypeError(
            "expected a StreamingASGITransport (either flavour) or a transport from "
            f"InProcessTransportFactory.transport_for, got {type(transport).__name__}"
        )
    return transport


def live_exchanges(transport: object) -> int:
    """How many exchanges `transport` still holds.

    An exchange is live while its app runs, and after that until its caller has read the
    response to its end, closed it, or dropped it (behaviour §6). Zero once every response
    is done with: anything else is a leak.
    """
    return len(_core(transport)._engine.live)


async def wait_apps_ended(transport: object) -> None:
    """Wait until every app `transport` has started has returned.

    Apps whose caller left run on for the transport's `disconnect_grace` before they are
    cancelled (behaviour §6); this waits for them, without closing anything.
    """
    for exchange in list(_core(transport)._engine.live):
        await exchange.wait_finished()
