"""Waiting on the fake bridge from any thread and any loop (behaviour §12).

A sync test drives the bridge from its own thread while the bridge runs on a loop thread, and
an async test may wait on a bridge that serves sync clients on another loop. An `anyio.Event`
may only be set on its own loop, so each async waiter is kept with its loop's token and woken
there; a blocking waiter (a sync test's) waits on a `threading.Event`. A waiter leaves the list
when its wait ends, however it ends (a timeout, a cancellation), and a waiter whose loop has
since ended is skipped: waking must never fail the code that made the change (a request of the
bridge's, another test's `release()`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import anyio
from anyio.lowlevel import EventLoopToken, current_token

from .._loop_host import call_soon

__all__ = ["DEFAULT_SYNC_TIMEOUT", "Waiters", "running_token"]

# How long the blocking waits of sync tests wait by default before `TimeoutError`: a bound on
# a wait that should end, so that a regression fails instead of hanging.
DEFAULT_SYNC_TIMEOUT = 10.0


def running_token() -> EventLoopToken | None:
    """The running loop's token, or `None` in a thread that runs no loop."""
    try:
        return current_token()
    except RuntimeError:  # anyio's NoEventLoopError, and older anyio's own RuntimeError
        return None


class _AsyncWaiter:
    __slots__ = ("event", "token")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.token = current_token()

    def wake(self, here: EventLoopToken | None) -> None:
        if self.token == here:
            self.event.set()
            return
        # Its loop may have ended since (the test that waited has finished): nothing to wake.
        with contextlib.suppress(anyio.RunFinishedError, RuntimeError):
            call_soon(self.token, self.event.set)


class _BlockingWaiter:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()

    def wake(self, here: EventLoopToken | None) -> None:
        self.event.set()


class Waiters:
    """Waiters for a change that any thread may make; `lock` guards that change."""

    __slots__ = ("_waiting", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._waiting: list[_AsyncWaiter | _BlockingWaiter] = []

    async def wait_for(self, done: Callable[[], bool]) -> None:
        """Wait until `done()` (called with `lock` held) is true."""
        while True:
            with self.lock:
                if done():
                    return
                waiter = _AsyncWaiter()
                self._waiting.append(waiter)
            try:
                await waiter.event.wait()
            finally:
                self._leave(waiter)

    def wait_for_blocking(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Block this thread until `done()` is true; `TimeoutError` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if done():
                    return
                waiter = _BlockingWaiter()
                self._waiting.append(waiter)
            try:
                woken = waiter.event.wait(max(0.0, deadline - time.monotonic()))
            finally:
                self._leave(waiter)
            if not woken:
                with self.lock:
                    if done():
                        return
                raise TimeoutError(f"{what} within {timeout} s")

    def _leave(self, waiter: _AsyncWaiter | _BlockingWaiter) -> None:
        with self.lock, contextlib.suppress(ValueError):  # already woken and removed
            self._waiting.remove(waiter)

    def wake_all(self) -> None:
        """Wake every waiter, each on its own loop. Call with `lock` held, after the change."""
        waiting, self._waiting = self._waiting, []
        if waiting:
            here = running_token()
            for waiter in waiting:
                waiter.wake(here)
