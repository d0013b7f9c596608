"""What a test may read of a streaming transport: how many exchanges it still holds."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from functools import partial
from typing import Any

from .._backend import spawn_detached
from .._transport import TransportCore
from ._wake import DEFAULT_SYNC_TIMEOUT, Waiters

__all__ = ["live_exchanges", "wait_apps_ended", "wait_apps_ended_sync"]


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
    # `copy()` takes the set in one step: a loop thread may change it meanwhile (§12).
    return [exchange for runner in runners if runner is not None for exchange in runner.live.copy()]


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
    waits for them, without closing anything. It may be awaited on any loop: a sync client's
    apps run on a loop thread (behaviour §12).
    """
    waiters = Waiters()
    await waiters.wait_for(_watch(transport, waiters))


def wait_apps_ended_sync(transport: object, timeout: float = DEFAULT_SYNC_TIMEOUT) -> None:
    """`wait_apps_ended()` for sync tests: block until every app `transport` has started
    has returned; `TimeoutError` after `timeout` seconds."""
    waiters = Waiters()
    waiters.wait_for_blocking(_watch(transport, waiters), timeout, "the apps did not end")


def _watch(transport: object, waiters: Waiters) -> Callable[[], bool]:
    """Watch each running app on its own loop; the result tells when all have ended.

    An exchange's events belong to the loop its app runs on, which may not be the waiter's:
    the wait runs there, and wakes the waiter through `waiters`.
    """
    running = [exchange for exchange in _live(transport) if not exchange.app_done]
    left = [len(running)]

    def ended() -> None:
        with waiters.lock:
            left[0] -= 1
            waiters.wake_all()

    for exchange in running:
        try:
            exchange.task.run_soon(partial(_watch_on_its_loop, exchange, ended))
        except RuntimeError:  # its loop has ended, and the app with it
            ended()
    return lambda: left[0] == 0


def _watch_on_its_loop(exchange: Any, ended: Callable[[], None]) -> None:
    async def watch() -> None:
        try:
            await exchange.wait_finished()
        finally:  # also when the loop shuts down, cancelling this watch and the app
            ended()

    spawn_detached(watch, contextvars.Context())
