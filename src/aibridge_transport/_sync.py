"""One sync request's exchange, between the calling thread and the app's event loop.

The app runs on a loop in another thread (see `_loop_host`); the calling thread blocks. Three
things cross between them, each through state guarded by one lock:

- The response. A courier task on the loop starts the exchange, publishes its start (or its
  failure), then moves body chunks from the exchange into a bounded deque. The reader thread
  takes chunks from the deque and blocks, on a `threading.Condition`, only when it is empty:
  a batch of chunks costs it one wake, not one round trip to the loop each. When the deque is
  full the courier waits on an event of the loop; the reader sets it (one wake of the loop)
  when it takes the chunk that makes room. The deque and the exchange's own buffer share
  `max_buffered_chunks` between them, so the app runs no further ahead than on the async
  side (behaviour §5).
- The request body. An iterator is consumed in the calling thread, never on the loop: the
  app's `receive()` asks for the next chunk and waits on an event of the loop; whichever
  thread of the caller is waiting (for the start or for a body chunk) produces it.
- The end. Closing the body, from any thread, marks it closed and wakes a blocked reader at
  once; then the exchange is closed on the loop (the app disconnected, cancelled after the
  grace), waiting for it only from a thread that is not the loop's.

Every wait re-checks its condition under the lock, and every state change that a waiter
could be waiting for is made under the lock and followed by a wake: no wakeup is lost.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel

from ._backend import AppTask, spawn_detached
from ._exchange import AppRunner, CoreProtocolError, CoreReadTimeout, CoreStreamClosed, Exchange
from ._loop_host import SAME_LOOP_READ_MESSAGE, after_fork_in_child, call_soon

if TYPE_CHECKING:
    from ._loop_host import LoopHost, _Loop
    from ._transport import FlavorClasses
    from .types import Scope

__all__ = ["Reader", "SyncExchange", "forget_loop_markers", "split_buffer"]

_CORE_ERRORS: Final = (CoreReadTimeout, CoreProtocolError, CoreStreamClosed)

# The courier's progress, as the calling thread sees it.
_PENDING, _STARTED, _FAILED = 0, 1, 2


def split_buffer(max_buffered_chunks: int) -> tuple[int, int]:
    """How `max_buffered_chunks` is shared: (the exchange's buffer, the thread-side deque).

    The deque holds at least one chunk, the one being handed over; with none (lock-step,
    as `max_buffered_chunks=0` is on the async side) the courier fetches a chunk only for a
    reader that waits for it (behaviour §12: the same bounds in sync and async).
    """
    if max_buffered_chunks == 0:
        return 0, 0
    deque_size = max(1, max_buffered_chunks // 2)
    return max(0, max_buffered_chunks - deque_size), deque_size


def forget_loop_markers(context: contextvars.Context) -> None:
    """Drop the caller's own event-loop markers from the context the app will run in.

    A caller running trio (or anyio's asyncio) marks its context with the library it runs;
    the app runs on another loop, which must not be taken for the caller's (behaviour §12).
    """
    sniffio = sys.modules.get("sniffio")
    if sniffio is not None:
        context.run(sniffio.current_async_library_cvar.set, None)


class SyncExchange:
    """One sync request with the app: the courier on the loop, the reader in a thread."""

    def __init__(
        self,
        engine: AppRunner,
        scope: Scope,
        body: bytes | Iterator[bytes],
        *,
        read_timeout: float | None,
        context: contextvars.Context,
        loop: _Loop,
        host: LoopHost,
        capacity: int,
        translate: Callable[[Exception], BaseException],
    ) -> None:
        self._engine = engine
        # Kept so that the owner's loop thread is not stopped (its owner collected) while a
        # response it serves is still read.
        self._host = host
        self._loop = loop
        self._scope = scope
        self._context = context
        self._read_timeout = read_timeout
        self._token = loop.token
        self._loop_ident = loop.ident
        self._capacity = capacity
        self._translate = translate
        # Reentrant: a finalizer that the collector runs inside a reader's few steps under the
        # lock may close this very response, in the same thread.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        # Response state (under the lock).
        self._progress = _PENDING
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._chunks: deque[bytes] = deque()
        self._ended = False
        self._error: BaseException | None = None
        self._closed = False
        self._room: anyio.Event | None = None
        # Request body state (under the lock).
        self._upload: Iterator[bytes] | None = None
        self._upload_body: bytes | _Upload = body if isinstance(body, bytes) else _Upload(self)
        if not isinstance(body, bytes):
            self._upload = iter(body)
        self._upload_chunks: deque[bytes] = deque()
        self._upload_done = False
        self._upload_error: BaseException | None = None
        self._upload_wanted: anyio.Event | None = None
        self._uploading = False
        # Loop side only.
        self._exchange: Exchange | None = None
        self._courier: AppTask | None = None
        # Whether closing must reach the exchange on the loop (not for a complete body).
        self._needs_close = True

    # -- the calling thread -----------------------------------------------------------------

    def begin(self) -> None:
        """Hand the request to the loop and wait for the response start, or its failure."""
        waiting = self._loop.waiting
        waiting.add(self)
        try:
            call_soon(self._token, self._launch)
        except anyio.RunFinishedError:  # a request racing the close (behaviour §12)
            waiting.discard(self)
            self._closed = True
            self._needs_close = False
            raise self._translate(CoreProtocolError(_LOOP_ENDED)) from None
        try:
            with self._lock:
                deadline = self._deadline()
                while self._progress == _PENDING:
                    if not self._wait(deadline):
                        self._give_up()
                        raise self._timed_out("no response start")
                if self._progress == _FAILED:
                    error = self._error
                    assert error is not None
                    self._error = None
                    raise error
        except BaseException:
            self.close()
            raise
        finally:
            waiting.discard(self)

    def loop_ended(self) -> None:
        """The loop thread has ended (closed) while this request waited for its start."""
        with self._lock:
            if self._progress == _PENDING:
                self._progress = _FAILED
                self._error = self._translate(CoreProtocolError(_LOOP_ENDED))
                self._ended = True
                self._needs_close = False
                self._changed.notify_all()

    def next_chunk(self) -> bytes | None:
        """The next body chunk, `None` at the end; raises the body's error."""
        if threading.get_ident() == self._loop_ident:
            # The chunk could only come from the loop this thread would block (behaviour §12).
            raise RuntimeError(SAME_LOOP_READ_MESSAGE)
        with self._lock:
            deadline = self._deadline()
            while True:
                if self._chunks:
                    chunk = self._chunks.popleft()
                    if self._capacity:
                        self._make_room()
                    return chunk
                if self._closed:
                    raise CoreStreamClosed
                if self._ended:
                    if self._error is not None:
                        raise self._error
                    return None
                if not self._capacity:
                    self._make_room()  # lock-step: the courier fetches for a waiting reader
                if not self._wait(deadline):
                    self._give_up()
                    raise self._timed_out("no response data")

    def _make_room(self) -> None:
        """Let the courier fetch the next chunk, if it waits for room (lock held)."""
        room, self._room = self._room, None
        if room is not None:
            with contextlib.suppress(anyio.RunFinishedError):  # the loop ended: nothing comes
                call_soon(self._token, room.set)

    def _deadline(self) -> float | None:
        timeout = self._read_timeout
        return None if timeout is None else time.monotonic() + timeout

    def _timed_out(self, what: str) -> BaseException:
        # Timed in this thread, not on the loop: an app that blocks the loop cannot stretch
        # the caller's timeout (behaviour §12).
        return self._translate(
            CoreReadTimeout(f"{what} from the app within {self._read_timeout} s")
        )

    def _give_up(self) -> None:
        """Close after a timeout (lock held): disconnect the app without waiting on the loop,
        which may be the very thing that is blocked."""
        self._closed = True
        self._chunks.clear()
        self._changed.notify_all()
        if self._needs_close:
            with contextlib.suppress(anyio.RunFinishedError):
                call_soon(self._token, self._close_soon)

    def _wait(self, deadline: float | None) -> bool:
        """Wait for a change (lock held); produce the next request body chunk if asked.

        False when `deadline` has passed.
        """
        if self._upload_wanted is None or self._uploading:
            if deadline is None:
                self._changed.wait()
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.wait(remaining)
            return True
        wanted, self._upload_wanted = self._upload_wanted, None
        self._uploading = True
        upload = self._upload
        assert upload is not None
        self._lock.release()
        chunk: bytes | None = None
        error: BaseException | None = None
        try:
            chunk = next(upload)
        except StopIteration:
            pass
        except BaseException as exc:
            error = exc
        finally:
            self._lock.acquire()
            self._uploading = False
        if error is not None:
            self._upload_error = error
        elif chunk is None:
            self._upload_done = True
        else:
            self._upload_chunks.append(chunk)
        self._changed.notify_all()
        with contextlib.suppress(anyio.RunFinishedError):  # the loop ended: the courier too
            call_soon(self._token, wanted.set)
        if error is not None:
            # The caller's own body failed: raised to the caller unchanged (behaviour §7).
            raise error
        return True

    def close(self) -> None:
        """Close the body: wake a blocked reader now, then disconnect the app on the loop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._chunks.clear()
            self._changed.notify_all()
        if not self._needs_close:
            return
        if threading.get_ident() == self._loop_ident or self._loop.stopping:
            # The loop cannot wait on itself; a loop told to stop may be blocked for good.
            with contextlib.suppress(anyio.RunFinishedError):
                call_soon(self._token, self._close_soon)
            return
        try:
            anyio.from_thread.run(self._aclose, token=self._token)
        except anyio.RunFinishedError:
            pass  # the loop is gone, and the app with it

    def abandon(self) -> None:
        """The response was dropped without being closed (behaviour §6).

        Called by a finalizer, which the collector may run in any thread, in the middle of
        any code, even while that thread holds this exchange's lock: so no lock here, only a
        callback scheduled on the loop, which takes the lock there.
        """
        if self._closed or not self._needs_close:
            return
        try:
            call_soon(self._token, self._abandon_on_loop)
        except Exception:  # no loop any more (interpreter exit): nothing left to stop
            pass

    # -- the loop ---------------------------------------------------------------------------

    def _launch(self) -> None:
        # Held until the courier ends: asyncio keeps only weak references to tasks, and a
        # courier waiting for room, with its response dropped, is otherwise a cycle of garbage.
        if self._loop.closing:
            # The owner's loop thread is stopping: it would not run this exchange to its end.
            self._lock.acquire()
            self._fail(self._translate(CoreProtocolError(_LOOP_ENDED)))
            return
        _RUNNING.add(self)
        try:
            self._courier = spawn_detached(self._run, contextvars.Context())
        except BaseException as exc:  # no task could start: the caller must hear of it
            _RUNNING.discard(self)
            self._lock.acquire()
            self._fail(exc)

    async def _run(self) -> None:
        try:
            await self._carry()
        finally:
            _RUNNING.discard(self)

    async def _carry(self) -> None:
        try:
            await self._start()
            if self._exchange is not None and self._needs_close:
                await self._pump(self._exchange)
        except anyio.get_cancelled_exc_class():
            # The consumer closed (it reads nothing more), or the loop is shutting down: a
            # reader still waiting gets the flavour's transport error (behaviour §7).
            with self._lock:
                if not self._ended:
                    if self._progress == _PENDING:
                        self._progress = _FAILED
                    self._error = self._translate(
                        CoreProtocolError("the transport closed before the response completed")
                    )
                    self._ended = True
                self._changed.notify_all()
            raise

    async def _start(self) -> None:
        if self._closed:  # the caller left before the courier's first step: no app to run
            self._needs_close = False
            return
        try:
            exchange = self._engine.start(
                self._scope,
                self._upload_body,
                read_timeout=self._read_timeout,
                context=self._context,
            )
            self._exchange = exchange
            exchange.translate = self._translate
            if not exchange.started:
                await exchange.ready()
        except anyio.get_cancelled_exc_class():
            raise
        except _CORE_ERRORS as exc:
            await self._hold()
            self._fail(self._translate(exc))
            return
        except BaseException as exc:  # the app's own exception, in raise mode (behaviour §7)
            await self._hold()
            self._fail(exc)
            return
        complete = exchange.complete_body()
        await self._hold()
        try:
            self.status = exchange.status
            self.headers = exchange.headers
            if complete is not None:
                self._chunks.extend(complete)
                self._ended = True
                self._needs_close = False  # nothing runs, nothing to release
            elif not self._capacity:
                self._room = anyio.Event()  # lock-step: no chunk before a reader waits for it
            self._progress = _STARTED
            self._changed.notify_all()
        finally:
            self._lock.release()

    async def _hold(self) -> None:
        """Take the lock on the loop without blocking the loop.

        A reader thread holds the lock only for a few steps, but the collector may run a
        finalizer in those steps that closes another response and waits on this loop: the
        loop must keep running, so it yields until the lock is free.
        """
        while not self._lock.acquire(blocking=False):
            await anyio.lowlevel.checkpoint()

    def _fail(self, error: BaseException) -> None:
        """Publish the failure; the lock is held and is released here."""
        try:
            self._progress = _FAILED
            self._error = error
            self._ended = True
            self._needs_close = False
            self._changed.notify_all()
        finally:
            self._lock.release()

    async def _pump(self, exchange: Exchange) -> None:
        capacity = self._capacity
        lock = self._lock
        room = self._room
        while True:
            if room is not None:
                await room.wait()  # the deque was full: the reader sets it as it takes one
            try:
                chunk = await exchange.next_chunk()
            except StopAsyncIteration:
                await self._end(None)
                return
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as exc:  # flavoured already; or the app's fatal exception
                await self._end(exc)
                return
            if not lock.acquire(blocking=False):
                await self._hold()
            try:
                if self._closed:
                    return
                self._chunks.append(chunk)
                self._changed.notify_all()
                # Only this courier adds chunks: a full deque stays full until the reader
                # takes one, and it sets the event it finds here when it does.
                room = self._room = anyio.Event() if len(self._chunks) >= capacity else None
            finally:
                lock.release()

    async def _end(self, error: BaseException | None) -> None:
        await self._hold()
        try:
            self._ended = True
            self._error = error
            self._changed.notify_all()
        finally:
            self._lock.release()

    async def _aclose(self) -> None:
        if self._courier is not None:
            self._courier.cancel()
        if self._exchange is not None:
            await self._exchange.aclose()

    def _close_soon(self) -> None:
        spawn_detached(self._aclose_logged, contextvars.Context())

    async def _aclose_logged(self) -> None:
        try:
            await self._aclose()
        except Exception:  # nobody waits for this close: the exchange logged what the app did
            pass

    def _abandon_on_loop(self) -> None:
        if not self._lock.acquire(blocking=False):  # see `_hold`: try again on the next turn
            call_soon(self._token, self._abandon_on_loop)
            return
        try:
            if self._closed:
                return
            self._closed = True
            self._chunks.clear()
        finally:
            self._lock.release()
        if self._courier is not None:
            self._courier.cancel()
        if self._exchange is not None:
            self._exchange.abandon()

    # -- the request body, on the loop ------------------------------------------------------

    async def next_upload(self) -> bytes:
        while True:
            await self._hold()
            try:
                if self._upload_chunks:
                    return self._upload_chunks.popleft()
                if self._upload_error is not None:
                    raise self._upload_error
                if self._upload_done or self._closed:
                    raise StopAsyncIteration
                wanted = self._upload_wanted = anyio.Event()
                self._changed.notify_all()
            finally:
                self._lock.release()
            await wanted.wait()


_LOOP_ENDED: Final = (
    "the event loop that serves this transport has ended: the transport or its factory was closed"
)

# The sync exchanges whose courier runs (see `_launch`); changed on the loops' threads only.
_RUNNING: set[SyncExchange] = set()
# A forked child has none of those couriers' loops (behaviour §12).
after_fork_in_child(_RUNNING.clear)


class _Upload:
    """The request body as the exchange reads it: chunks the calling thread produces."""

    __slots__ = ("_sync",)

    def __init__(self, sync: SyncExchange) -> None:
        self._sync = sync

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        return await self._sync.next_upload()


class SyncBody:
    """The response body as a `SyncByteStream`: chunks as the app sends them."""

    flavor: FlavorClasses

    __slots__ = ("_sync",)

    def __init__(self, sync: SyncExchange) -> None:
        self._sync: SyncExchange | None = sync

    # Not a generator: iterating again after a `break` resumes where it stopped (behaviour §5).
    # A reader of its own, with no `close()`: httpx2 iterates with `yield from`, which would
    # close the body when its generator is dropped.
    def __iter__(self) -> Iterator[bytes]:
        return Reader(self)

    def __next__(self) -> bytes:
        sync = self._sync
        if sync is None:
            raise self.flavor.stream_closed()
        try:
            chunk = sync.next_chunk()
        except CoreStreamClosed:
            raise self.flavor.stream_closed() from None
        if chunk is None:
            raise StopIteration
        return chunk

    def close(self) -> None:
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()

    def __del__(self) -> None:
        sync = self._sync
        if sync is not None:
            sync.abandon()


class Reader:
    """Iterates a body without owning it (see `SyncBody.__iter__`)."""

    __slots__ = ("_body",)

    def __init__(self, body: Iterator[bytes]) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._body)


_SYNC_BODIES: dict[type, type[SyncBody]] = {}


def sync_body_class(flavor: FlavorClasses) -> type[SyncBody]:
    """The flavour's `SyncByteStream` subclass (its client checks `isinstance` against it)."""
    module: Any = sys.modules[flavor.name]
    cached = _SYNC_BODIES.get(module.SyncByteStream)
    if cached is None:
        cached = type(
            f"SyncBody[{flavor.name}]",
            (SyncBody, module.SyncByteStream),
            {"__slots__": (), "flavor": flavor},
        )
        _SYNC_BODIES[module.SyncByteStream] = cached
    return cached
