"""Where a sync request's app runs: an event loop in another thread (behaviour §12).

A sync client's request blocks its thread, so the app must run on an event loop elsewhere:
the loop on which the owner (a factory or a bare transport) was entered with `async with`,
while it is entered, so that the lifespan state is the one the async side sees; otherwise one
loop thread of the owner's own, started by anyio's blocking portal on first use and kept for
every later sync request, so no request costs a thread.

A sync request made on the very thread that runs that loop could only wait forever (the loop
it waits on is the one it blocks): it is refused at once.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio.from_thread
from anyio.lowlevel import EventLoopToken, current_token

if TYPE_CHECKING:
    from ._exchange import AppRunner

__all__ = [
    "SAME_LOOP_MESSAGE",
    "LoopHost",
    "SyncClosing",
    "call_soon",
]

T = TypeVar("T")

SAME_LOOP_MESSAGE = (
    "a sync request on the thread whose event loop runs the app would wait forever: "
    "use the async client (httpx.AsyncClient, openai.AsyncOpenAI, anthropic.AsyncAnthropic) "
    "in async code"
)


def call_soon(token: EventLoopToken, func: Callable[..., object], *args: object) -> None:
    """Schedule `func(*args)` on the loop of `token` without waiting for it.

    anyio's `from_thread.run_sync` waits for the result: a reader that only has to wake the
    loop would block until the loop's next turn. The backend's own scheduling hook does not.
    """
    token.backend_class.run_sync_soon(func, args, token.native_token)


class _Loop:
    __slots__ = ("ident", "token")

    def __init__(self, token: EventLoopToken, ident: int) -> None:
        self.token = token
        self.ident = ident


class LoopHost:
    """The event loop that serves an owner's sync requests (see the module's docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entered: list[_Loop] = []
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] | None = None
        self._own: _Loop | None = None
        # The sync engines whose exchanges run here: cancelled before the own loop stops.
        self.engines: weakref.WeakSet[AppRunner] = weakref.WeakSet()

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
        portal_cm = anyio.from_thread.start_blocking_portal(name="aibridge-transport-loop")
        portal = portal_cm.__enter__()
        self._portal_cm = portal_cm
        self._own = _Loop(portal.call(current_token), portal.call(threading.get_ident))
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
        try:
            call_soon(loop.token, _spawn, func)
        except anyio.RunFinishedError:
            pass

    def run(self, func: Callable[..., Coroutine[Any, Any, T]], *args: object) -> T:
        """Run `func(*args)` on the loop for this thread and wait for its result."""
        return anyio.from_thread.run(func, *args, token=self.loop().token)

    def close(self) -> None:
        """Cancel what still runs on the own loop thread, then stop the thread and join it."""
        with self._lock:
            portal_cm, self._portal_cm = self._portal_cm, None
            own, self._own = self._own, None
        if portal_cm is None or own is None:
            return
        if threading.get_ident() == own.ident:
            # Closed from the loop's own thread (a finalizer, say): it cannot wait for itself.
            call_soon(own.token, _spawn, self._close_engines)
            threading.Thread(target=portal_cm.__exit__, args=(None, None, None)).start()
            return
        try:
            anyio.from_thread.run(self._close_engines, token=own.token)
        finally:
            portal_cm.__exit__(None, None, None)

    async def _close_engines(self) -> None:
        for engine in list(self.engines):
            await engine.aclose()

    def __repr__(self) -> str:
        own: Any = self._own
        return f"<LoopHost entered={len(self._entered)} own_thread={own is not None}>"


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
