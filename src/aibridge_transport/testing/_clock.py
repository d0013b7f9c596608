"""Clocks for timing in tests: the real one (optionally sped up) and one the test controls.

Whatever paces a reply (a replayed cassette's recorded timing, `LatencyMiddleware`) sleeps on
a `Clock`, and the recorder stamps chunks with one, so a latency test can run on
`VirtualClock` and never wait: time moves only when something sleeps on it.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel

__all__ = ["Clock", "RealClock", "VirtualClock"]


@runtime_checkable
class Clock(Protocol):
    """What paces and stamps exchanges: the time now, and a sleep."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """
    The monotonic clock; `speed` scales every sleep (2.0 sleeps half as long).

    Arguments:
        speed: How much faster than real time sleeps pass (must be positive).
    """

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("RealClock speed must be positive")
        self.speed = speed

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(seconds, 0.0) / self.speed)


class VirtualClock:
    """
    A clock that never waits: a sleep moves its time forward at once (and lets other tasks
    run), so the exchanges it paces carry exact, repeatable times.

    ```python
    clock = VirtualClock()
    await clock.sleep(0.5)
    assert clock.now() == 0.5
    ```

    Usable from any thread (a sync test's app runs on a loop thread, behaviour §12).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept: list[float] = []
        """Every sleep asked of the clock, in order."""

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the time forward without sleeping."""
        if seconds < 0:
            raise ValueError("time cannot go back")
        with self._lock:
            self._now += seconds

    async def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(seconds, 0.0)
            self.slept.append(seconds)
        await anyio.lowlevel.checkpoint()
