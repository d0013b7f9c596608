"""Where a sync request's app runs: an event loop in another thread (behaviour §12).

A sync client's request blocks its thread, so the app must run on an event loop elsewhere:
the loop on which the owner (a factory or a bare transport) was entered with `async with`,
while it is entered, so that the lifespan state is the one the async side sees; otherwise one
loop thread of the owner's own, started on first use and kept for every later sync request,
so no request costs a thread.

That thread never keeps the process alive or blocks another (behaviour §12): it is a daemon
thread, stopped by a signal at interpreter exit and when its owner is collected unclosed (a
join there could block another event loop, or hang the exit); a forked child forgets it and
starts its own.

A sync request made on the very thread that runs that loop could only wait forever (the loop
it waits on is the one it blocks): it is refused at once.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio.from_thread
from anyio.lowlevel import EventLoopToken, current_token

if TYPE_CHECKING:
    from ._exchange import AppRunner

__all__ = [
    "SAME_LOOP_MESSAGE",
    "SAME_LOOP_READ_MESSAGE",
    "LoopHost",
    "SyncClosing",
    "after_fork_in_child",
    "call_soon",
]

T = TypeVar("T")

_USE_ASYNC = (
    "use the async client (httpx.AsyncClient, openai.AsyncOpenAI, anthropic.AsyncAnthropic) "
    "in async code"
)
SAME_LOOP_MESSAGE = (
    f"a sync request on the thread whose event loop runs the app would wait forever: {_USE_ASYNC}"
)
SAME_LOOP_READ_MESSAGE = (
    "reading a sync response body on the thread whose event loop runs the app would wait "
    f"forever: {_USE_ASYNC}"
)


def call_soon(token: EventLoopToken, func: Callable[..., object], *args: object) -> None:
    """Schedule `func(*args)` on the loop of `token` without waiting for it.

    anyio's `from_thread.run_sync` waits for the result: a reader that only has to wake the
    loop would block until the loop's next turn. The backend's own scheduling hook does not.
    """
    token.backend_class.run_sync_soon(func, args, token.native_token)


class _Loop:
    """A loop that serves sync requests: its token and the thread that runs it.

    For a loop thread of the library's own: `stopping` is set, by any thread, once it has
    been told to stop, so that nobody starts to wait on it any more (it may be blocked by an
    app: at interpreter exit, a response collected then must not wait for it); `closing` is
    set on the loop's thread when it begins to stop, so that an exchange scheduled after that
    is refused, not started on a loop that will never run it to its end (behaviour §12).
    `waiting` holds the sync requests waiting for their start: whatever a closed loop did not
    run of theirs, each is told once it has ended (its `loop_ended()`).
    """

    __slots__ = ("closing", "ident", "stopping", "token", "waiting")

    def __init__(self, token: EventLoopToken, ident: int) -> None:
        self.token = token
        self.ident = ident
        self.stopping = False
        self.closing = False
        self.waiting: set[Any] = set()


# How long interpreter exit waits, in all, for the library's loop threads to cancel what they
# still run. Bounded: an app blocking its loop (a `time.sleep`) must not hold the process.
_EXIT_GRACE = 1.0


class _LoopThread:
    """One loop thread of the library's own, which stops on a signal (behaviour §12).

    A daemon thread: it never keeps the process alive. It holds no reference to its owner,
    so that an owner dropped unclosed is collected, and its finalizer only signals the
    thread to stop: the collector may run in any thread, inside another event loop, where a
    join would block (or, at exit, hang).
    """

    def __init__(self, engines: weakref.WeakSet[AppRunner]) -> None:
        self.engines = engines
        self.loop: _Loop | None = None
        self._stop: anyio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._main, name="aibridge-transport-loop", daemon=True
        )

    def start(self) -> _Loop:
        self.thread.start()
        self._started.wait()
        if self.loop is None:
            raise RuntimeError("the loop thread failed to start") from self._error
        _THREADS.add(self)
        return self.loop

    def _main(self) -> None:
        try:
            anyio.run(self._serve)
        except BaseException as exc:  # a thread has no caller: kept for `start`
            self._error = exc
        finally:
            self._started.set()
            _THREADS.discard(self)
            if self.loop is not None:
                # A wake-up queued in the last instant before the loop closed never ran.
                for waiting in list(self.loop.waiting):
                    waiting.loop_ended()

    async def _serve(self) -> None:
        self._stop = anyio.Event()
        loop = _Loop(current_token(), threading.get_ident())
        self.loop = loop
        self._started.set()
        await self._stop.wait()
        loop.closing = True
        # Whatever still runs here is cancelled and awaited; what is left after that (an app
        # that refuses to end) is cancelled by the loop's own shutdown.
        for engine in list(self.engines):
            with contextlib.suppress(Exception):
                await engine.aclose()

    def stop_soon(self) -> None:
        """Signal the thread to stop; never waits (a finalizer, interpreter exit)."""
        loop, stop = self.loop, self._stop
        if loop is None or stop is None:
            return
        loop.stopping = True
        with contextlib.suppress(anyio.RunFinishedError, RuntimeError):
            call_soon(loop.token, stop.set)

    def stop(self, timeout: float | None = None) -> None:
        """Signal the thread to stop and wait for it (never from the thread itself)."""
        self.stop_soon()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)


# The library's loop threads that run: stopped at interpreter exit (behaviour §12).
_THREADS: weakref.WeakSet[_LoopThread] = weakref.WeakSet()


@atexit.register
def _stop_loop_threads_at_exit() -> None:
    threads = list(_THREADS)
    for thread in threads:
        thread.stop_soon()
    deadline = time.monotonic() + _EXIT_GRACE
    for thread in threads:
        thread.stop(max(0.0, deadline - time.monotonic()))


class LoopHost:
    """The event loop that serves an owner's sync requests (see the module's docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entered: list[_Loop] = []
        self._thread: _LoopThread | None = None
        self._own: _Loop | None = None
        # Signals the own thread to stop when the owner is dropped unclosed; never joins.
        self._finalizer: weakref.finalize[Any, Any] | None = None
        # The sync engines whose exchanges run here: cancelled before the own loop stops.
        self.engines: weakref.WeakSet[AppRunner] = weakref.WeakSet()
        _HOSTS.add(self)

    # -- the async side ---------------------------------------------------------------------

    def attach(self) -> None:
        """The owner was entered with `async with` on the running loop: serve from it."""
        with self._lock:
            self._entered.append(_Loop(current_token(), threading.get_ident()))

    def detach(self) -> None:
        """The owner's `async with` on the running loop ended."""
        ident = threading.get_ident()
        with self._lock:
            for index in range(len(self._entered) - 1, -1, -1):
                if self._entered[index].ident == ident:
                    del self._entered[index]
                    return

    # -- the sync side ----------------------------------------------------------------------

    @property
    def owns_thread(self) -> bool:
        return self._own is not None

    def loop(self) -> _Loop:
        """The loop for a sync request from this thread; `RuntimeError` on that loop's thread."""
        with self._lock:
            loop = self._entered[-1] if self._entered else self._own
            if loop is None:
                loop = self._start_thread()
        if loop.ident == threading.get_ident():
            raise RuntimeError(SAME_LOOP_MESSAGE)
        return loop

    def start(self) -> _Loop:
        """Start the own loop thread now (the owner's sync `with`)."""
        with self._lock:
            return self._own if self._own is not None else self._start_thread()

    def _start_thread(self) -> _Loop:
        thread = _LoopThread(self.engines)
        self._own = thread.start()
        self._thread = thread
        self._finalizer = weakref.finalize(self, thread.stop_soon)
        self._finalizer.atexit = False  # the exit hook above stops it, and waits a little
        return self._own

    def serves_this_thread(self) -> bool:
        """Whether this thread runs the loop that sync requests run on now."""
        with self._lock:
            loop = self._entered[-1] if self._entered else self._own
        return loop is not None and loop.ident == threading.get_ident()

    def cancel_soon(self, func: Callable[[], Coroutine[Any, Any, object]]) -> None:
        """Start `func()` on the loop of sync requests, if one runs, without waiting for it.

        For a factory's transport closed by its client: that may happen in a finalizer, in a
        thread that holds a sync exchange's lock which the loop needs, so it never waits.
        """
        with self._lock:
            loop = self._entered[-1] if self._entered else self._own
        if loop is None:
            return
        with contextlib.suppress(anyio.RunFinishedError, RuntimeError):
            call_soon(loop.token, _spawn, func)

    def run(self, func: Callable[..., Coroutine[Any, Any, T]], *args: object) -> T:
        """Run `func(*args)` on the loop for this thread and wait for its result."""
        return anyio.from_thread.run(func, *args, token=self.loop().token)

    def close(self) -> None:
        """Cancel what still runs on the own loop thread, then stop the thread and join it."""
        with self._lock:
            thread, self._thread = self._thread, None
            own, self._own = self._own, None
            finalizer, self._finalizer = self._finalizer, None
        if thread is None or own is None:
            return
        if finalizer is not None:
            finalizer.detach()
        if threading.get_ident() == own.ident:
            # Closed from the loop's own thread (a finalizer, say): it cannot wait for itself.
            thread.stop_soon()
            return
        try:
            anyio.from_thread.run(self._close_engines, token=own.token)
        except anyio.RunFinishedError:
            pass  # the thread has stopped already
        finally:
            thread.stop()

    async def _close_engines(self) -> None:
        for engine in list(self.engines):
            await engine.aclose()

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's loop threads do not exist here (behaviour §12).

        The child's first sync request starts a loop thread of its own. A loop entered with
        `async with` survives only if the thread that forked runs it.
        """
        self._lock = threading.Lock()  # another thread of the parent may have held it
        here = threading.get_ident()
        self._entered = [loop for loop in self._entered if loop.ident == here]
        self._thread = self._own = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if not self._entered:
            for engine in list(self.engines):
                engine.live.clear()  # their apps ran on the parent's loops

    def __repr__(self) -> str:
        own: Any = self._own
        return f"<LoopHost entered={len(self._entered)} own_thread={own is not None}>"


# Every host, so that a forked child forgets the parent's loop threads (behaviour §12).
_HOSTS: weakref.WeakSet[LoopHost] = weakref.WeakSet()
_AFTER_FORK: list[Callable[[], None]] = []


def after_fork_in_child(hook: Callable[[], None]) -> None:
    """Run `hook()` in a forked child, after the hosts have forgotten the parent's threads."""
    _AFTER_FORK.append(hook)


def _forget_parent_loops() -> None:
    for host in list(_HOSTS):
        host.forget_after_fork()
    _THREADS.clear()
    for hook in _AFTER_FORK:
        hook()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_loops)


def _spawn(func: Callable[[], Coroutine[Any, Any, object]]) -> None:
    from ._backend import spawn_detached

    async def run() -> None:
        try:
            await func()
        except Exception:  # nobody waits for it; what the apps did is logged by the exchange
            pass

    spawn_detached(run, contextvars.Context())


class SyncClosing:
    """`with owner:` closes it with its sync `close()`, as `httpx.Client` does its transport."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()
