"""The one place that knows which event loop runs: app tasks nobody has to enter.

An exchange's app task must outlive the caller's task (the response is often read and closed
from another task) and must not need a task group that the caller enters: SDKs never enter
their `http_client`. So the task is spawned at loop level, a native asyncio task or a trio
system task, and the library itself cancels and awaits it (`aclose`, grace periods). Both are
cheaper than an anyio task group, and native cancellation is cheaper than an anyio cancel
scope around every app.

On asyncio the task starts eagerly: its first step runs at once, inside `spawn_detached`, as
Python 3.12's eager tasks do (`Task(..., eager_start=True)`, used there). An app that answers
without blocking (a JSON reply) has then finished before the caller would have yielded, and
the caller reads its response without a turn of the loop, like `httpx.ASGITransport` does.
Python 3.11 has no eager tasks; there the task's first step, which `create_task` queued on
the loop, is taken off the queue and run now, with the task made current for it exactly as
the loop would (see `_cpython.run_first_step`). Loops without that queue (uvloop) start the
task on their next turn, as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import sys
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from ._cpython import running_loop, waits_on_a_future

__all__ = ["AppTask", "Event", "delivered_cancellation", "fatal_in", "spawn_detached"]


class Event(Protocol):
    """What the library needs of an event: asyncio's and trio's both are one."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self) -> Awaitable[Any]: ...


# After a cancellation the app swallowed, how long until it is cancelled again: cancellation
# is level-triggered, as in anyio and trio, so a stubborn app still ends.
_RECANCEL_INTERVAL = 0.05


class AppTask:
    """A running app task: cancel it now or after a delay, and yield to the loop cheaply."""

    __slots__ = ()

    # Set when the task's eager first step cancelled the task that spawned it (an app that
    # cancels its caller's cancel scope at once): that task is running but was not current
    # then, so the cancellation waits for its next suspension, which must come inside the
    # scope that was cancelled (see `Exchange.ready`).
    caller_cancelled = False

    # Whether the loop runs the tasks woken together in a random order (trio does, by design;
    # asyncio runs them in the order they were woken).
    shuffles_turns = False

    def cancel(self) -> None:
        raise NotImplementedError

    def cancel_after(self, delay: float) -> None:
        """Cancel the task `delay` seconds from now, unless an earlier cancel is planned."""
        raise NotImplementedError

    def release(self) -> None:
        """Drop whatever the task armed (a grace timer): its app has ended (behaviour §6)."""

    def checkpoint(self) -> Awaitable[None]:
        raise NotImplementedError

    def pass_turn(self) -> Awaitable[None]:
        """Let the other tasks run once; a cancellation waits for the task's next wait."""
        raise NotImplementedError

    def timeout(self, delay: float) -> AbstractAsyncContextManager[object]:
        """A scope that raises `TimeoutError` when `delay` seconds pass inside it."""
        raise NotImplementedError

    def event(self) -> Event:
        """A new event of the task's loop (the loop's own, cheaper than an anyio `Event`)."""
        raise NotImplementedError

    def run_soon(self, func: Callable[[], object]) -> None:
        """Call `func()` on the task's loop soon, from any thread (behaviour §12: the testing
        helpers wait from any loop); raises `RuntimeError` once that loop has ended."""
        raise NotImplementedError


class _AsyncioTask(AppTask):
    __slots__ = ("_deadline", "_loop", "_spared", "_task", "_timer", "caller_cancelled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = float("inf")
        self._spared = False
        self.caller_cancelled = False

    def start(self, coroutine: Coroutine[Any, Any, None], context: contextvars.Context) -> None:
        caller = asyncio.current_task(self._loop)
        if caller is None:  # not from a task (a callback): the loop starts it
            self._task = self._loop.create_task(coroutine, context=context)
            return
        requested = caller.cancelling()
        self._task = _start_eagerly(self._loop, caller, coroutine, context)
        if caller.cancelling() > requested:
            self.caller_cancelled = True

    def cancel(self) -> None:
        if self._task is None:  # asked from inside the task's eager first step
            self._loop.call_soon(self.cancel)
            return
        if self._task.done():
            return
        coroutine = self._task.get_coro()
        if inspect.iscoroutine(coroutine) and (
            inspect.getcoroutinestate(coroutine) == inspect.CORO_CREATED
        ):
            # A coroutine cancelled before its first step would never run its `finally`.
            self._loop.call_soon(self.cancel)
            return
        if not self._spared and not waits_on_a_future(self._task):
            # A task that is due to run (woken by the disconnect, say, or passing a
            # checkpoint in `send()`) gets that turn, once, before it is cancelled: it sees
            # why it must stop, as anyio's delivery lets a woken task run first.
            self._spared = True
            self._loop.call_soon(self.cancel)
            return
        self._deadline = 0.0
        self._task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(_RECANCEL_INTERVAL, self.cancel)

    def cancel_after(self, delay: float) -> None:
        deadline = self._loop.time() + delay
        if deadline >= self._deadline or (self._task is not None and self._task.done()):
            return
        self._deadline = deadline
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(deadline, self.cancel)

    def release(self) -> None:
        # A pending timer holds this handle, hence the task and the exchange it runs: with a
        # long grace period, every early close would keep one alive until it fired (§6).
        self._deadline = float("inf")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def checkpoint(self) -> Awaitable[None]:
        return _next_turn()

    def pass_turn(self) -> Awaitable[None]:
        # A task due to run is spared once by `cancel` (see there).
        return _next_turn()

    def timeout(self, delay: float) -> AbstractAsyncContextManager[object]:
        # asyncio's own: cheaper per wait than an anyio cancel scope.
        return asyncio.timeout(delay)

    def event(self) -> Event:
        return asyncio.Event()

    def run_soon(self, func: Callable[[], object]) -> None:
        self._loop.call_soon_threadsafe(func)


class _TrioTask(AppTask):
    __slots__ = ("_scope", "_token")

    shuffles_turns = True

    def __init__(self) -> None:
        import trio

        self._scope = trio.CancelScope()
        self._token = trio.lowlevel.current_trio_token()

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

    async def pass_turn(self) -> None:
        import trio

        await trio.lowlevel.cancel_shielded_checkpoint()

    def timeout(self, delay: float) -> AbstractAsyncContextManager[object]:
        return _trio_timeout(delay)

    def event(self) -> Event:
        import trio

        return trio.Event()

    def run_soon(self, func: Callable[[], object]) -> None:
        import trio

        try:
            self._token.run_sync_soon(func)
        except trio.RunFinishedError:
            raise RuntimeError("the task's trio run has finished") from None


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


if sys.version_info >= (3, 12):

    def _start_eagerly(
        loop: asyncio.AbstractEventLoop,
        caller: asyncio.Task[Any],
        coroutine: Coroutine[Any, Any, None],
        context: contextvars.Context,
    ) -> asyncio.Task[None]:
        if loop.get_task_factory() is not None:  # the loop's owner decides how tasks start
            return loop.create_task(coroutine, context=context)
        return asyncio.Task(coroutine, loop=loop, context=context, eager_start=True)

else:
    from ._cpython import run_first_step

    def _start_eagerly(
        loop: asyncio.AbstractEventLoop,
        caller: asyncio.Task[Any],
        coroutine: Coroutine[Any, Any, None],
        context: contextvars.Context,
    ) -> asyncio.Task[None]:
        task = loop.create_task(coroutine, context=context)
        run_first_step(loop, caller, task)
        return task


def delivered_cancellation(exc: BaseException) -> bool:
    """Whether `exc` is the running task's cancellation, delivered by its loop or the library.

    A task spawned here must let its own cancellation through and catch every other
    `BaseException`, including a `CancelledError` the app raised itself rather than received
    (behaviour §7): anything else escaping a trio system task ends `trio.run`. On asyncio a
    delivered cancellation is one that was requested of the task (`Task.cancelling()`);
    trio's `Cancelled` is always delivered by a cancel scope. A group of nothing but
    cancellations (a task group cancelled from outside) is one too.
    """
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        kind: type[BaseException] = trio.Cancelled
    else:
        task = asyncio.current_task()
        if task is None or not task.cancelling():
            return False
        kind = asyncio.CancelledError
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(kind)[1] is None
    return isinstance(exc, kind)


def fatal_in(exc: BaseException) -> BaseException | None:
    """The `KeyboardInterrupt` or `SystemExit` in `exc`, also inside a group from a task group.

    Those are never turned into an answer and never swallowed (behaviour §7).
    """
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        found: BaseException | None = exc.split((KeyboardInterrupt, SystemExit))[0]
        while isinstance(found, BaseExceptionGroup):
            found = found.exceptions[0]
        return found
    return None


def spawn_detached(
    task: Callable[[], Coroutine[Any, Any, None]],
    context: contextvars.Context,
    bind: Callable[[AppTask], None] | None = None,
) -> AppTask:
    """Start `task()` in `context` on the running loop; return its handle.

    `task` must catch every `BaseException` but its own cancellation (see
    `delivered_cancellation`). On asyncio its first step
    runs before this returns (see the module's docstring); `bind` receives the handle before
    that step, for a task that needs its own handle.
    """
    loop = running_loop()
    if loop is None:
        trio = sys.modules.get("trio")
        if trio is None or not trio.lowlevel.in_trio_run():
            raise RuntimeError("no running event loop (asyncio or trio)")
        trio_handle = _TrioTask()
        if bind is not None:
            bind(trio_handle)
        trio.lowlevel.spawn_system_task(trio_handle.run, task, context=context)
        return trio_handle
    handle = _AsyncioTask(loop)
    if bind is not None:
        bind(handle)
    handle.start(task(), context)
    return handle
