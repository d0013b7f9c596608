"""Waiting on the fake bridge from any thread.

A sync test drives the bridge from its own thread while the bridge runs on a loop thread, and
an async test may wait on a bridge that serves sync clients on another loop (behaviour §12).
An `anyio.Event` may only be set from its own loop's thread, so each waiter is kept with its
loop and woken there.
"""

from __future__ import annotations

import threading

import anyio
from anyio.lowlevel import EventLoopToken, current_token

from .._loop_host import call_soon

__all__ = ["Waiters"]


class Waiters:
    """Tasks waiting for a change that any thread may make; `lock` guards that change."""

    __slots__ = ("_waiting", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._waiting: list[tuple[anyio.Event, EventLoopToken, int]] = []

    def add(self) -> anyio.Event:
        """An event the calling task then waits on. Call with `lock` held."""
        event = anyio.Event()
        self._waiting.append((event, current_token(), threading.get_ident()))
        return event

    def wake_all(self) -> None:
        """Wake every waiter on its own loop. Call with `lock` held, after the change."""
        waiting, self._waiting = self._waiting, []
        here = threading.get_ident()
        for event, token, thread in waiting:
            if thread == here:
                event.set()
            else:
                call_soon(token, event.set)
