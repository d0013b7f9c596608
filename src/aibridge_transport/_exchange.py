"""One request/response exchange with an ASGI app: the flavour-free core.

The app runs in its own task (see `_backend`). Its `send()` feeds the body chunks into an
anyio memory object stream; the consumer reads the stream. The buffer bounds how far the app
runs ahead of a slow consumer (behaviour §5). A consumer waiting for the response start waits
on an event of the loop, which the start (or the app's end) sets.

The stream is opened by the first side that has to wait for a chunk: the consumer for one that
has not come yet, or the app for room once it is a buffer's worth of chunks ahead. Until then
the chunks are kept in a list (`_early`), at most the buffer size, which the consumer reads
first and which moves into the stream if the app opens it. A response that is complete before
its consumer reads a chunk (a JSON answer, whether the app's first step sent it or a later
one) never needs a stream, a large share of the cost of a small request.

When the consumer leaves, the app is disconnected the way uvicorn does it at ASGI spec 2.3:
`receive()` answers `http.disconnect`, `send()` becomes a silent no-op, and after a grace
period the app's task is cancelled (behaviour §6). An app whose response is complete is never
cancelled by its client: it runs on (background tasks) until it ends or its owner shuts down
(`shut_down`), as a server lets it. What the app does wrong is mapped by the table in
behaviour §7.

Nothing here knows httpx or httpx2: errors leave as the `Core*` exceptions below, which the
adapters translate into the client's own flavour.

Theory of operation
-------------------

Two sides meet in an exchange. The app's side is its task, calling `receive()` and `send()`;
the reader's side is the caller waiting for the start (`ready`), then the body stream calling
`next_chunk()` and `aclose()`. Between them lies the pipe: `_early`, then the stream.

The response state moves forward only, and only by what the app sends:

    INIT     --http.response.start-------------------->  STARTED
    STARTED  --http.response.body, more_body=True----->  STARTED
    STARTED  --http.response.body, more_body=False---->  COMPLETE

Anything else is a protocol violation: `send()` raises `RuntimeError` naming it and the state
stays (behaviour §7). One move is the reader's: when the app ended in INIT, 500 mode answers
for it (`_start_failed`), INIT to COMPLETE.

Beside the state, how the exchange ends is told by flags, each set once and never cleared:
`app_done` (the task ended; `error` holds what it raised, until it is raised or handed
over), `disconnected` (the app has been told the client is gone: the reader closed, timed out
or was cancelled, its own request body failed (`upload_error`), or the transport closed
(`transport_closed`)), and `_consumer_closed` (the reader closed the body; implies
`disconnected`). The compound conditions the two sides test are named properties below.

Who ends an app task: the app itself; the grace timer that `disconnect` arms, only while the
response is not COMPLETE; `AppRunner.aclose` (the transport's close), which cancels the apps
whose response is not COMPLETE; and `shut_down`, the owner's close (the bare transport's own,
or the factory's), which waits for the apps that run on after a COMPLETE response, up to the
owner's `shutdown_timeout`, then cancels them.
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from enum import IntEnum
from typing import Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._backend import AppTask, Event, delivered_cancellation, fatal_in, spawn_detached
from ._rules import check_response_headers, check_status, declared_body_length
from .types import ASGIApp, Message, Scope

__all__ = [
    "AbandonGuard",
    "AppRunner",
    "CoreProtocolError",
    "CoreReadTimeout",
    "CoreStreamClosed",
    "Exchange",
    "ResponseState",
    "shut_down",
]

logger = logging.getLogger("aibridge_transport")

_INTERNAL_SERVER_ERROR: Final = b"Internal Server Error"
_ERROR_HEADERS: Final = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(_INTERNAL_SERVER_ERROR)).encode()),
]
_DISCONNECT: Final[Message] = {"type": "http.disconnect"}


class ResponseState(IntEnum):
    """How far the app's response has gone (see the theory of operation above)."""

    INIT = 0
    STARTED = 1
    COMPLETE = 2


# Global names: the per-chunk path compares against these, not enum class attributes.
_INIT: Final = ResponseState.INIT
_STARTED: Final = ResponseState.STARTED
_COMPLETE: Final = ResponseState.COMPLETE


class CoreReadTimeout(Exception):
    """The read timeout passed while waiting for the response start or a body chunk."""


class CoreProtocolError(Exception):
    """The response cannot be completed (the app failed or stopped after the start)."""


class CoreStreamClosed(Exception):
    """The body was read after the consumer closed it."""


class _BodyLengthMismatch(RuntimeError):
    """What the app's `send()` raises when the body disagrees with its `content-length`.

    The reader sees an incomplete response in both modes (behaviour §5), as over a socket,
    not the app's own exception.
    """


def _is_fatal(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt | SystemExit)


class AppRunner:
    """What every exchange of one transport shares: the app, its options, the live exchanges."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        raise_app_exceptions: bool,
        disconnect_grace: float,
        max_buffered_chunks: int,
        shutdown_timeout: float,
        shuts_down: bool = True,
        log_label: str = "",
        hidden_errors: list[BaseException] | None = None,
        explain_failure: Callable[[BaseException, Scope], str | None] | None = None,
    ) -> None:
        if disconnect_grace < 0 or math.isnan(disconnect_grace):
            raise ValueError(f"disconnect_grace must be >= 0 seconds, got {disconnect_grace!r}")
        if shutdown_timeout < 0 or math.isnan(shutdown_timeout):
            raise ValueError(f"shutdown_timeout must be >= 0 seconds, got {shutdown_timeout!r}")
        if max_buffered_chunks < 0:
            raise ValueError(f"max_buffered_chunks must be >= 0, got {max_buffered_chunks!r}")
        self.app = app
        self.raise_app_exceptions = raise_app_exceptions
        self.disconnect_grace = disconnect_grace
        self.max_buffered_chunks = max_buffered_chunks
        # How long the owner's close waits for apps that run on after their response (§6).
        self.shutdown_timeout = shutdown_timeout
        # Whether this runner's own close is that owner's close (a bare transport), or a
        # factory's is (its transports' runners): then closing the client leaves those apps.
        self.shuts_down = shuts_down
        self.log_label = log_label
        # The likely cause of an app failure, when its owner can tell (a factory whose
        # lifespan never ran, behaviour §8): added to the log line and to the exception.
        self.explain_failure = explain_failure
        # Strict mode: exceptions a 500 (or a log line) hid from the client are kept here.
        self.hidden_errors = hidden_errors
        self.live: set[Exchange] = set()
        # `KeyboardInterrupt` / `SystemExit` from apps whose client had left: raised by
        # `aclose`, never dropped (behaviour §7).
        self.fatal_errors: list[BaseException] = []

    def start(
        self,
        scope: Scope,
        body: bytes | AsyncIterable[bytes],
        *,
        read_timeout: float | None,
        context: contextvars.Context,
    ) -> Exchange:
        """Run the app for `scope`; await `ready()` on the exchange unless it is `started`.

        Two steps, so that an exchange whose response started in the app's first step (on
        asyncio, see `_backend`) costs its caller no coroutine at all.
        """
        exchange = Exchange(self, scope, body, read_timeout)
        spawn_detached(exchange.run, context, exchange.bind_task)
        if not exchange.app_done:
            # Nothing else runs during that synchronous step: live from here is soon enough.
            self.live.add(exchange)
        return exchange

    def note_hidden(self, exc: BaseException) -> None:
        if self.hidden_errors is not None:
            self.hidden_errors.append(exc)

    async def aclose(self) -> None:
        """The transport's close: cancel and await every app whose response is not complete.

        An app whose response is complete is disconnected, never cancelled here: it runs on
        to its end (behaviour §6) and its owner's close waits for it (`shut_down`), which
        for a bare transport is this very close.
        """
        # Finished apps stay live until their consumer lets go; their bodies stay readable.
        exchanges = [exchange for exchange in self.live if not exchange.app_done]
        streaming = []
        for exchange in exchanges:
            exchange.transport_closed = True
            exchange.disconnect()
            if exchange.state != _COMPLETE:
                exchange.task.cancel()
                streaming.append(exchange)
        for exchange in streaming:
            await exchange.wait_finished()
        if self.shuts_down:
            await shut_down([self])
        fatal = self.take_fatal()
        if fatal is not None:
            raise fatal

    def take_fatal(self) -> BaseException | None:
        """The first fatal error kept for the close (the others are dropped with it)."""
        if not self.fatal_errors:
            return None
        first = self.fatal_errors[0]
        self.fatal_errors.clear()
        return first

    def hand_over_fatal(self, exc: BaseException, description: str) -> None:
        """Keep a fatal error nobody will read for `aclose`, and say so at once (§7)."""
        logger.error(
            "ASGI app raised %s after its client left (%s); raised again when the transport closes",
            type(exc).__name__,
            description,
            exc_info=exc,
        )
        self.fatal_errors.append(exc)


async def shut_down(runners: Iterable[AppRunner]) -> None:
    """The owner's close: wait for the apps still running, then cancel what is left.

    What still runs after the transports closed is an app whose response was complete: a
    background task. A server waits for those at shutdown (behaviour §6); here the wait is
    bounded by the runners' `shutdown_timeout`, so that a close never hangs. Those still
    running then are cancelled, with a warning, and awaited: nothing outlives the close.
    """
    runners = list(runners)
    running = [
        exchange for runner in runners for exchange in list(runner.live) if not exchange.app_done
    ]
    if not running:
        return
    timeout = max(runner.shutdown_timeout for runner in runners)
    for exchange in running:
        exchange.disconnect()  # its receive() answers http.disconnect, as at a shutdown
    try:
        with anyio.move_on_after(timeout):
            for exchange in running:
                await exchange.wait_finished()
    finally:
        # Also when the closing caller is cancelled: no app task outlives its owner's close.
        left = [exchange for exchange in running if not exchange.app_done]
        for exchange in left:
            logger.warning(
                "ASGI app still running %s s after its response to %s completed; cancelled "
                "at shutdown (shutdown_timeout)",
                timeout,
                exchange.describe(),
            )
            exchange.task.cancel()
    for exchange in left:
        await exchange.wait_finished()


class Exchange:
    """One request/response with the app: its task, its `receive`/`send`, the body reader."""

    __slots__ = (
        "_body",
        "_body_iterator",
        "_body_left",
        "_body_turn",
        "_consumer_closed",
        "_early",
        "_finished",
        "_first_chunk",
        "_head",
        "_reader_waited",
        "_reading_body",
        "_recv",
        "_send",
        "_start_waiter",
        "_wake_receive",
        "app_done",
        "disconnected",
        "engine",
        "error",
        "headers",
        "read_timeout",
        "request_complete",
        "scope",
        "state",
        "status",
        "task",
        "translate",
        "transport_closed",
        "upload_error",
    )

    def __init__(
        self,
        engine: AppRunner,
        scope: Scope,
        body: bytes | AsyncIterable[bytes],
        read_timeout: float | None,
    ) -> None:
        self.engine = engine
        self.scope = scope
        self.read_timeout = read_timeout
        self._head = scope["method"] == "HEAD"

        # -- the request body, as the app's receive() takes it ----------------------------
        self._body = body
        self._body_iterator: AsyncIterator[bytes] | None = None
        self.request_complete = False
        # Whether a task of the app is inside the caller's body iterator; other tasks calling
        # `receive()` meanwhile wait for `_body_turn` (behaviour §7: several may wait at once).
        self._reading_body = False
        self._body_turn: Event | None = None
        # What the caller's own body iterator raised: raised to the caller, never a 500 (§7).
        self.upload_error: BaseException | None = None

        # -- the app's side: its response, its task, how it ended --------------------------
        self.state = _INIT
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        # Body bytes still due by the response's `content-length`; -1 when not checked (§5).
        self._body_left = -1
        # The app passes its turn once after its first chunk if a reader waits (see `send`).
        self._first_chunk = True
        self.task: AppTask  # bound by `spawn_detached` before the app's first step
        self.app_done = False
        self.error: BaseException | None = None
        # Set when the response completes or the client leaves: a receive() waiting for it.
        self._wake_receive: Event | None = None
        # Set when the app's task ends: whoever waits for that (`wait_finished`).
        self._finished: Event | None = None

        # -- the reader's side ------------------------------------------------------------
        # Set by the start, or by the app's end: a reader waiting for the start.
        self._start_waiter: Event | None = None
        # Whether a reader has had to wait (for the start or a chunk); the app then passes
        # its turn once after its first chunk, so that chunk is not held up by the next ones.
        self._reader_waited = False
        self._consumer_closed = False
        self.translate: Callable[[Exception], BaseException] = _untranslated

        # -- the pipe between them (see the module's docstring) ---------------------------
        # Chunks sent before the stream was opened; also the 500 answer's body.
        self._early: list[bytes] = []
        # Opened by `_open_stream` when a side has to wait.
        self._send: MemoryObjectSendStream[object] | None = None
        self._recv: MemoryObjectReceiveStream[object] | None = None

        # -- the ending, each set once ----------------------------------------------------
        self.disconnected = False
        self.transport_closed = False

    def bind_task(self, task: AppTask) -> None:
        self.task = task

    @property
    def started(self) -> bool:
        """Whether the caller has its response now, with nothing to await (see `ready`)."""
        return self.state != _INIT and not self.task.caller_cancelled and self.upload_error is None

    async def ready(self) -> None:
        """Wait for the response start, or for the reason there is none."""
        if self.task.caller_cancelled:
            try:
                await self.task.checkpoint()  # the cancellation arrives here, in the caller's scope
            except BaseException:
                self.disconnect()
                raise
        if self.state == _INIT:
            await self.wait_start()
        elif self.upload_error is not None:
            # Failed before the response was handed over: raised from the request, as
            # httpx over a socket raises it before reading any response (behaviour §7).
            raise self.upload_error

    def complete_body(self) -> list[bytes] | None:
        """All of the body, when the app finished it cleanly before anyone waited."""
        return self._early if self.body_in_hand else None

    # -- named conditions ---------------------------------------------------------------

    @property
    def body_in_hand(self) -> bool:
        """The whole body is in `_early` for good: the app ended cleanly after its final body,
        no stream was opened and the client is still there. (Then `holds_resources` is False.)"""
        return (
            self._recv is None
            and self.state == _COMPLETE
            and self.app_done
            and self.error is None
            and not self.disconnected
        )

    @property
    def holds_resources(self) -> bool:
        """Whether dropping the response unclosed leaves something to release: a running
        app or an open stream. A response complete in the app's first step holds neither."""
        return not self.app_done or self._recv is not None

    @property
    def _no_more_chunks(self) -> bool:
        """No chunk will come that has not been sent: the final body was sent or the app ended."""
        return self.app_done or self.state == _COMPLETE

    @property
    def _start_settled(self) -> bool:
        """A reader has no start left to wait for: the app started, ended, or the caller's
        body failed."""
        return self.state != _INIT or self.app_done or self.upload_error is not None

    @property
    def _runs_after_body(self) -> bool:
        """The body is complete but the app still runs (it may yet raise, behaviour §7)."""
        return self.state == _COMPLETE and not self.app_done

    @property
    def _failed_after_body(self) -> bool:
        """The app raised after it completed the body: the reader got the whole body."""
        return self.error is not None and self.state == _COMPLETE and self.app_done

    @property
    def _leaves_nothing_to_finalize(self) -> bool:
        """With the app ended, the live set may let go: the client left, or no stream was
        opened that an abandoned response would have to close (see `disconnect`)."""
        return self.disconnected or self._recv is None

    def _open_stream(self) -> None:
        """Open the stream for a side that has to wait, moving the early chunks into it."""
        # Called unsubscripted: `create_memory_object_stream[object]` builds a generic alias
        # on every call, a noticeable part of a small request.
        send: MemoryObjectSendStream[object]
        recv: MemoryObjectReceiveStream[object]
        send, recv = anyio.create_memory_object_stream(self.engine.max_buffered_chunks)
        for chunk in self._early:  # fits: the app keeps at most the buffer size early
            send.send_nowait(chunk)
        self._early.clear()
        self._send, self._recv = send, recv

    # -- the app's side ---------------------------------------------------------------------

    async def run(self) -> None:
        # Cancellation (grace period, transport closed) passes through: the task handle of
        # `_backend` cancels the task natively.
        try:
            try:
                await self.engine.app(self.scope, self.receive, self.send)
            except Exception as exc:
                self._app_raised(exc)
            except BaseException as exc:
                if delivered_cancellation(exc):
                    raise
                fatal = fatal_in(exc)
                if fatal is not None:
                    # Never a 500, never swallowed: handed to the consumer (behaviour §7).
                    self.error = fatal
                else:
                    # A custom subclass, a group from the app's task group, a CancelledError
                    # it raised itself: a failure like any other (§7), and it must not reach
                    # the loop.
                    self._app_raised(exc)
            else:
                if self.state == _INIT:
                    self._app_returned()
            if self._body_iterator is not None and not self.request_complete:
                await self._close_request_body()
        finally:
            self._finish()

    async def receive(self) -> Message:
        if self.disconnected:
            return _DISCONNECT
        if not self.request_complete:
            body = self._body
            if isinstance(body, bytes):
                self.request_complete = True
                return {"type": "http.request", "body": body, "more_body": False}
            if self._reading_body:
                # Another task of the app is reading the body: the next message is the one
                # after its own (behaviour §7).
                await self._wait_body_turn()
                return await self.receive()
            return await self._read_body(body)
        if self.state != _COMPLETE:
            # Nothing more to read: wait until the client leaves or the response completes.
            if self._wake_receive is None:
                self._wake_receive = self.task.event()
            await self._wake_receive.wait()
        return _DISCONNECT

    async def _read_body(self, body: AsyncIterable[bytes]) -> Message:
        self._reading_body = True
        try:
            if self._body_iterator is None:
                self._body_iterator = aiter(body)
            async for chunk in self._body_iterator:
                if chunk:
                    return {"type": "http.request", "body": bytes(chunk), "more_body": True}
            self.request_complete = True
            return {"type": "http.request", "body": b"", "more_body": False}
        except BaseException as exc:
            if delivered_cancellation(exc):
                raise
            # The caller's own body failed: not the app's fault (behaviour §7).
            self._upload_failed(exc)
            return _DISCONNECT
        finally:
            self._reading_body = False
            turn = self._body_turn
            if turn is not None:
                self._body_turn = None
                turn.set()

    async def _wait_body_turn(self) -> None:
        turn = self._body_turn
        if turn is None:
            turn = self._body_turn = self.task.event()
        await turn.wait()

    def _upload_failed(self, exc: BaseException) -> None:
        """The caller gets its exception; the app a disconnect, as over a socket (§7)."""
        self.upload_error = exc
        if self._send is not None:
            self._send.close()  # wakes a reader waiting for a chunk: it raises the error
        if self._start_waiter is not None:
            self._start_waiter.set()
        self.disconnect()

    async def send(self, message: Message) -> None:
        """Place a body chunk for the reader, waiting for room; everything else is sync."""
        if self.state != _STARTED or message.get("type") != "http.response.body":
            self._start_or_refuse(message)
            return
        body, more_body, ends_short = self._take_body(message)
        if self.disconnected:
            return  # a no-op once the client left, as under uvicorn (behaviour §6)
        if body and not self._head:
            stream = self._send
            if stream is None:
                if len(self._early) < self.engine.max_buffered_chunks:
                    self._early.append(body)
                else:  # a buffer's worth ahead: from now on the app may have to wait
                    self._open_stream()
                    await self._put(body)
            else:
                # Inline: trying without waiting spares a coroutine and a loop trip per chunk.
                try:
                    stream.send_nowait(body)
                except anyio.WouldBlock:
                    await self._put(body)
                except anyio.BrokenResourceError:
                    pass  # the consumer left: send() is a no-op, as under uvicorn
            if more_body and self._first_chunk and self._reader_waited:
                # A reader is waiting: let it have the first chunk now, before the app fills
                # the buffer (time to first byte); from then on the app runs ahead between
                # the reader's turns (throughput).
                self._first_chunk = False
                await self.task.pass_turn()
        if ends_short:
            raise _BodyLengthMismatch(
                f"ASGI app ended the response body {self._body_left} bytes short of its "
                "content-length"
            )
        if not more_body:
            if self._send is not None:
                self._send.close()  # EOF now, even if the app keeps running (behaviour §5)
            self._wake()

    def _start_or_refuse(self, message: Message) -> None:
        """Take `http.response.start` in INIT; refuse anything out of order, by name.

        The order is checked even after a disconnect, so a broken app fails the same way.
        """
        kind = message.get("type")
        if self.state != _INIT or kind != "http.response.start":
            raise RuntimeError(_order_violation(self.state, kind))
        status = message.get("status")
        if type(status) is not int or not 100 <= status <= 599:
            status = check_status(status)  # the message for a bad one; int subclasses pass
        self.status = status
        self.headers = check_response_headers(message.get("headers", []))
        if not self._head:
            self._body_left = declared_body_length(status, self.headers)
        self.state = _STARTED
        if self._start_waiter is not None:
            self._start_waiter.set()

    def _take_body(self, message: Message) -> tuple[bytes, bool, bool]:
        """The chunk of an `http.response.body` in STARTED, whether more follows, and whether
        it ends the body short of its `content-length`; moves to COMPLETE at the final one."""
        body = message.get("body", b"")
        if type(body) is not bytes:
            if not isinstance(body, bytes | bytearray | memoryview):
                raise RuntimeError(
                    f"ASGI 'http.response.body' body must be bytes, got {type(body).__name__}"
                )
            body = bytes(body)
        more_body = bool(message.get("more_body", False))
        ends_short = False
        if self._body_left >= 0 and not self.disconnected:
            ends_short = self._count_body(len(body), more_body)
            if ends_short:
                more_body = True  # the bytes sent reach the reader; then the error
        if not more_body:
            self.state = _COMPLETE
        return body, more_body, ends_short

    def _count_body(self, size: int, more_body: bool) -> bool:
        """Count a chunk against `content-length`; whether the body ends short of it (§5).

        Too many bytes fail here, before the chunk is placed, as a server refuses them.
        """
        left = self._body_left - size
        if left < 0:
            raise _BodyLengthMismatch(
                "ASGI app sent more body bytes than its content-length declares"
            )
        self._body_left = left
        return not more_body and left > 0

    async def _put(self, item: bytes) -> None:
        assert self._send is not None
        try:
            self._send.send_nowait(item)
            return
        except anyio.WouldBlock:
            pass
        except anyio.BrokenResourceError:
            return  # the consumer left: send() is a no-op, as under uvicorn
        try:
            await self._send.send(item)
        except anyio.BrokenResourceError:
            return

    def describe(self) -> str:
        label = self.engine.log_label
        return f"{self.scope['method']} {self.scope['path']}" + (f" ({label})" if label else "")

    def _app_raised(self, exc: BaseException) -> None:
        self.error = exc
        engine = self.engine
        if self.upload_error is not None:
            # The app only saw the disconnect that the caller's own failure caused.
            logger.debug("ASGI app raised after the request body failed", exc_info=exc)
            return
        description = self.describe()
        if engine.explain_failure is not None:
            hint = engine.explain_failure(exc, self.scope)
            if hint is not None:
                exc.add_note(hint)  # raise and strict mode show it too
                description = f"{description}; {hint}"
        if self.state == _INIT:
            if not engine.raise_app_exceptions:
                logger.error(
                    "ASGI app raised before starting the response to %s; answering 500",
                    description,
                    exc_info=exc,
                )
                engine.note_hidden(exc)
        elif self.state == _STARTED:
            if not engine.raise_app_exceptions:
                logger.error(
                    "ASGI app raised after starting the response to %s",
                    description,
                    exc_info=exc,
                )
        elif not engine.raise_app_exceptions or self._consumer_closed:
            logger.error(
                "ASGI app raised after completing the response to %s",
                description,
                exc_info=exc,
            )
            engine.note_hidden(exc)

    def _app_returned(self) -> None:
        if self.state == _INIT:
            error = RuntimeError("ASGI app returned without starting the response")
            self.error = error
            # An app that returns once its client has gone did right: uvicorn is silent then.
            if not self.engine.raise_app_exceptions and not self.disconnected:
                logger.error(
                    "ASGI app returned without starting response to %s; answering 500",
                    self.describe(),
                )
                self.engine.note_hidden(error)

    async def _close_request_body(self) -> None:
        iterator = self._body_iterator
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None and not self.request_complete:
            try:
                await aclose()
            except Exception:
                logger.debug("closing the request body raised", exc_info=True)

    def _finish(self) -> None:
        self.app_done = True
        self.task.release()
        if self.disconnected:
            self._hand_over_fatal()
        if self._send is not None:
            self._send.close()
        if self._start_waiter is not None:
            self._start_waiter.set()
        self._wake()
        if self._leaves_nothing_to_finalize:
            self.engine.live.discard(self)
        if self._finished is not None:
            self._finished.set()

    def _wake(self) -> None:
        if self._wake_receive is not None:
            self._wake_receive.set()
        if self._body_turn is not None:
            self._body_turn.set()

    def _take_fatal(self) -> BaseException | None:
        error = self.error
        if error is not None and _is_fatal(error):
            self.error = None  # raised once
            return error
        return None

    def _hand_over_fatal(self) -> None:
        """A fatal error of an app whose client left goes to the transport's `aclose` (§7)."""
        fatal = self._take_fatal()
        if fatal is not None:
            self.engine.hand_over_fatal(fatal, self.describe())

    # -- the consumer's side ----------------------------------------------------------------

    async def wait_start(self) -> None:
        if self.state != _INIT:
            return  # started while the app's first step ran
        try:
            if not self.app_done:
                await self._wait_for_start()
            if self.upload_error is not None:
                raise self.upload_error
            if self.state == _INIT:  # the app ended without starting a response
                self._start_failed()
        except BaseException:
            self.disconnect()  # cancelled, timed out, or the app's error raised
            raise

    async def _wait_for_start(self) -> None:
        """Until the app starts the response or ends, under the read timeout."""
        self._reader_waited = True
        task = self.task
        # One turn of the loop first, two on trio (see `_wait_blocking`): the app usually
        # starts within it, which spares the event and the read timeout's scope.
        for _ in range(2 if task.shuffles_turns else 1):
            await task.checkpoint()
            if self._start_settled:
                return
        waiter = self._start_waiter = task.event()
        timeout = self.read_timeout
        if timeout is None:
            await waiter.wait()
            return
        try:
            async with task.timeout(timeout):
                await waiter.wait()
        except TimeoutError:
            raise CoreReadTimeout(f"no response start from the app within {timeout} s") from None

    def _start_failed(self) -> None:
        fatal = self._take_fatal()
        if fatal is not None:
            self._close_receiving()
            raise fatal
        error = self.error
        if self.transport_closed:
            # Not the app's failure: a made-up 500 would be retried by SDKs (behaviour §7).
            self._close_receiving()
            raise CoreProtocolError("the transport was closed before the app started a response")
        if self.engine.raise_app_exceptions:
            self._close_receiving()
            if error is None:  # cancelled before it started: only when the transport closed
                raise CoreProtocolError("the transport closed before the app started a response")
            raise error
        # 500 mode: what uvicorn answers when the app fails before the start (behaviour §7).
        self.status = 500
        self.headers = list(_ERROR_HEADERS)
        if self.scope["method"] != "HEAD":
            self._early.append(_INTERNAL_SERVER_ERROR)
        self.state = _COMPLETE

    def _close_receiving(self) -> None:
        if self._recv is not None:
            self._recv.close()

    def _closed_error(self) -> BaseException:
        """What a read after the disconnect raises: the caller's own body error if that was
        why (behaviour §7), else what a closed stream raises."""
        if self.upload_error is not None:
            return self.upload_error
        return CoreStreamClosed()

    def _take(self) -> object:
        recv = self._recv
        if recv is None:  # every chunk so far came early
            if self.disconnected:
                raise self._closed_error()  # as a closed stream would
            return _EOF if self._no_more_chunks else _PENDING
        try:
            return recv.receive_nowait()
        except anyio.WouldBlock:
            return _PENDING
        except anyio.EndOfStream:
            return _EOF
        except anyio.ClosedResourceError:
            raise self._closed_error() from None

    async def _turn_and_take(self) -> object:
        """One turn of the loop, then the next item if it has come (else `_PENDING`)."""
        try:
            await self.task.checkpoint()
        except BaseException:
            self.disconnect()  # the caller was cancelled (behaviour §6)
            raise
        return self._take()

    async def _wait_blocking(self) -> object:
        """The next item, waiting on the stream under the read timeout."""
        if self.task.shuffles_turns:
            # Trio runs the tasks that became runnable together in a random order: the app
            # may not have had its turn yet. A second turn is certain to include it, and is
            # cheaper than the timed wait.
            item = await self._turn_and_take()
            if item is not _PENDING:
                return item
        timeout = self.read_timeout
        recv = self._recv
        assert recv is not None
        try:
            if timeout is None:
                return await recv.receive()
            async with self.task.timeout(timeout):
                return await recv.receive()
        except anyio.EndOfStream:
            return _EOF
        except anyio.ClosedResourceError:
            raise self._closed_error() from None
        except TimeoutError:
            self.disconnect()
            raise CoreReadTimeout(f"no response data from the app within {timeout} s") from None
        except BaseException:
            self.disconnect()  # the caller was cancelled: the app must not run on (behaviour §6)
            raise

    async def next_chunk(self) -> bytes:
        """The next body chunk; `StopAsyncIteration` at the end of the body.

        Errors leave through `translate`, which the adapter sets to give them the client's
        flavour: the body stream can hand out this coroutine itself, one fewer per chunk.
        """
        try:
            if self._early:
                return self._early.pop(0)
            if self.disconnected:
                raise self._closed_error()
            item = self._take()
            if item is _PENDING:
                # One turn, then a look, as `_turn_and_take` does, spelled out in place: this
                # is the per-chunk path, and a call would cost a coroutine of its own per chunk.
                if self._recv is None:
                    self._open_stream()
                    self._reader_waited = True
                try:
                    await self.task.checkpoint()
                except BaseException:
                    self.disconnect()  # the caller was cancelled (behaviour §6)
                    raise
                item = self._take()
                if item is _PENDING:
                    item = await self._wait_blocking()
            if item is _EOF:
                self._end_of_body()
        except _CORE_ERRORS as exc:
            raise self.translate(exc) from exc.__cause__
        assert isinstance(item, bytes)
        return item

    def _end_of_body(self) -> None:
        self._close_receiving()
        if self.upload_error is not None:
            raise self.upload_error
        fatal = self._take_fatal()
        if fatal is not None:
            raise fatal
        error = self.error
        if self.state == _COMPLETE:
            raise StopAsyncIteration
        if error is not None:
            if self.engine.raise_app_exceptions and not isinstance(error, _BodyLengthMismatch):
                # The app's own exception object, as httpx.ASGITransport and Starlette's
                # TestClient raise it (behaviour §7).
                self.error = None  # raised once
                raise error
            raise CoreProtocolError(
                "the ASGI app raised after starting the response; the body is incomplete"
            ) from error
        if self.app_done:
            raise CoreProtocolError(
                "incomplete response: the ASGI app returned without sending the final body"
            )
        raise CoreProtocolError("incomplete response: the app was cancelled")

    async def aclose(self) -> None:
        """Close the body: disconnect the app; wait for it only after a complete response,
        through a bare transport, in raise mode or in strict mode."""
        if self._consumer_closed:
            return
        self._consumer_closed = True
        engine = self.engine
        wait = engine.shuts_down or engine.raise_app_exceptions or engine.hidden_errors is not None
        if wait and self._runs_after_body:
            # So the app's effects, and an exception it raises after the final body, are
            # there when the close returns, as with httpx.ASGITransport (behaviour §6, §7).
            try:
                async with self.task.timeout(engine.disconnect_grace):
                    await self.wait_finished()
            except TimeoutError:
                pass  # the app runs on past the grace period, to its owner's close (§6)
            finally:
                # Also when the closing caller is cancelled: the app hears the client left.
                fatal = self._take_fatal()
                self.disconnect()
                if fatal is not None:
                    raise fatal
        fatal = self._take_fatal()
        self.disconnect()
        if fatal is not None:
            raise fatal
        if self._failed_after_body and engine.raise_app_exceptions:
            error, self.error = self.error, None  # raised once
            assert error is not None
            raise error

    def disconnect(self) -> None:
        """Tell the app the client is gone; cancel its task after the grace period, unless
        its response is complete (behaviour §6: background work runs on). Sync."""
        if self.disconnected:
            return
        self.disconnected = True
        self._close_receiving()
        self._early.clear()  # what a closed stream would drop
        self._wake()
        if self.app_done:
            # Kept live until now, so that a response abandoned after its app ended is
            # finalized before its receive stream, which is closed here (behaviour §6).
            self.engine.live.discard(self)
            self._hand_over_fatal()
        elif self.state != _COMPLETE:
            self.task.cancel_after(self.engine.disconnect_grace)

    def abandon(self) -> None:
        """The response was garbage-collected without being closed (behaviour §6)."""
        if self._consumer_closed or self.disconnected:
            return
        self._consumer_closed = True
        try:
            self.disconnect()
        except Exception:  # no event loop any more (interpreter exit): nothing left to stop
            self.disconnected = True
            self._close_receiving()

    async def wait_finished(self) -> None:
        if self.app_done:
            return
        if self._finished is None:
            self._finished = self.task.event()
        await self._finished.wait()


class AbandonGuard:
    """Releases an exchange whose response was dropped without being closed (behaviour §6).

    Apart from the body stream on purpose: httpx responses are reference cycles, and a
    finalizer in a cycle makes its collection slower; a closed body drops its guard, so only
    abandoned responses reach the collector with a finalizer.
    """

    __slots__ = ("exchange",)

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    def __del__(self) -> None:
        self.exchange.abandon()


def _order_violation(state: ResponseState, kind: object) -> str:
    """Why the app may not send a message of type `kind` in `state` (behaviour §7)."""
    if state == _COMPLETE:
        return f"ASGI app sent {kind!r} after the response was complete"
    if state == _STARTED:
        if kind == "http.response.start":
            return "ASGI app sent 'http.response.start' twice"
        return f"ASGI app sent {kind!r} while sending the response body"
    if kind == "http.response.body":
        return f"ASGI app sent {kind!r} before 'http.response.start'"
    return f"ASGI app sent unknown message type {kind!r}; expected 'http.response.start'"


def _untranslated(exc: Exception) -> BaseException:
    return exc


_CORE_ERRORS: Final = (CoreReadTimeout, CoreProtocolError, CoreStreamClosed)
_EOF: Final = object()
_PENDING: Final = object()
