"""The one place that knows which event loop runs: app tasks nobody has to enter.

An exchange's app task must outlive the caller's task (the response is often read and closed
from another task) and must not need a task group that the caller enters: SDKs never enter
their `http_client`. So the task is spawned at loop level, a native asyncio task or a trio
system task, and the library itself cancels and awaits it (`aclose`, grace periods). Both are
cheaper than an anyio task group, and native cancellation is cheaper than an anyio cancel
scope around every app (about 5 us of a small request on asyncio).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import sys
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

__all__ = ["AppTask", "spawn_detached"]

# After a cancellation the app swallowed, how long until it is cancelled again: cancellation
# is level-triggered, as in anyio and trio, so a stubborn app still ends.
_RECANCEL_INTERVAL = 0.05


class AppTask:
    """A running app task: cancel it now or after a delay, and yield to the loop cheaply."""

    __slots__ = ()

    def cancel(self) -> None:
        raise NotImplementedError

    def cancel_after(self, delay: float) -> None:
        """Cancel the task `delay` seconds from now, unless an earlier cancel is planned."""
        raise NotImplementedError

    def checkpoint(self) -> Awaitable[None]:
        raise NotImplementedError

    def timeout(self, delay: float) -> AbstractAsyncContextManager[object]:
        """A scope that raises `TimeoutError` when `delay` seconds pass inside it."""
        raise NotImplementedError


class _AsyncioTask(AppTask):
    __slots__ = ("_deadline", "_loop", "_task", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
        self._loop = loop
        self._task = task
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = float("inf")

    def cancel(self) -> None:
        if self._task.done():
            return
        coroutine = self._task.get_coro()
        waiter = getattr(self._task, "_fut_waiter", None)
        if (waiter is not None and waiter.done()) or (
            inspect.iscoroutine(coroutine)
            and inspect.getcoroutinestate(coroutine) == inspect.CORO_CREATED
        ):
            # Two moments to wait out by a turn of the loop, as anyio does: a task already
            # woken (by the disconnect, say) gets to see why before it is cancelled, and a
            # coroutine cancelled before its first step would never run its `finally`.
            self._loop.call_soon(self.cancel)
            return
        self._deadline = 0.0
        self._task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(_RECANCEL_INTERVAL, self.cancel)

    def cancel_after(self, delay: float) -> None:
        deadline = self._loop.time() + delay
        if deadline >= self._deadline or self._task.done():
            return
        self._deadline = deadline
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(deadline, self.cancel)

    def checkpoint(self) -> Awaitable[None]:
        return _next_turn()

    def timeout(self, delay: float) -> AbstractAsyncContextManager[object]:
        # asyncio's own: an anyio cancel scope costs about 30 us more per wait.
        return asyncio.timeout(delay)


class _TrioTask(AppTask):
    __slots__ = ("_scope",)

    def __init__(self) -> None:
        import trio

        self._scope = trio.CancelScope()

    async def run(self, task: Callable[[], Coroutine[Any, Any, None]]) -> None:
        with self._scope:
            await task()

    def cancel(self) -> None:
        self._scope.cancel()

    def cancel_after(self, delay: float) -> None:
        import trio

        self._scope.deadline = min(self._scope.deadline, trio.current_time() + delay)

    async def checkpoint(self) -> None:
        import trio

        await trio.lowlevel.checkpoint()

    def timeout(self, delay: float) -> AbstractAsyncContextManager[object]:
        return _trio_timeout(delay)


@asynccontextmanager
async def _trio_timeout(delay: float) -> AsyncIterator[None]:
    import trio

    with trio.move_on_after(delay) as scope:
        yield
    if scope.cancelled_caught:
        raise TimeoutError


@types.coroutine
def _next_turn() -> Generator[None, None, None]:
    # What `asyncio.sleep(0)` does inside, minus its coroutine: a bare yield reschedules the
    # task for the loop's next turn.
    yield


def _running_trio() -> bool:
    trio = sys.modules.get("trio")
    return trio is not None and bool(trio.lowlevel.in_trio_run())


def spawn_detached(
    task: Callable[[], Coroutine[Any, Any, None]], context: contextvars.Context
) -> AppTask:
    """Start `task()` in `context` on the running loop; return its handle.

    `task` must catch every exception but cancellation itself.
    """
    if _running_trio():
        import trio

        handle = _TrioTask()
        trio.lowlevel.spawn_system_task(handle.run, task, context=context)
        return handle
    loop = asyncio.get_running_loop()
    return _AsyncioTask(loop, loop.create_task(task(), context=context))
