"""Property-based fault fuzzing: scripted ASGI apps against scripted consumers.

Each example plays one generated app script (start or not, any status, chunks of any size with
or without checkpoints between them, and every ending of behaviour §7, raising an `Exception`
or any other `BaseException`) against one generated consumer script (read all, read some then
close, be cancelled, time out, abandon, read from another task, close the client mid-stream;
with a request body that raises or not), through the generic transport in both modes and
through the in-process factory, on both flavours. The event loop is driven here with
`anyio.run` for each backend, because hypothesis and function-scoped fixtures do not mix.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import gc
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import httpx2
import pytest
from asgi import chunk, start, wait_for_disconnect
from fuzz_workload import other_tasks
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aibridge_transport import (
    AIBridgeTransportError,
    InProcessTransportFactory,
    StreamingASGITransport,
    with_delegated_api_key_id,
)
from aibridge_transport.httpx2 import StreamingASGITransport as StreamingASGITransport2
from aibridge_transport.types import Receive, Scope, Send

# More for a long campaign: AIBRIDGE_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py
EXAMPLES = int(os.environ.get("AIBRIDGE_FUZZ_EXAMPLES", "80"))
GRACE = 0.05
# Only for apps that never end their response on their own (a server would wait forever too).
HANG_READ_TIMEOUT = 0.1
# An example that takes longer than this is stuck: a bug, never a slow machine.
EXAMPLE_DEADLINE = 10.0


class AppEnding(enum.StrEnum):
    """How a scripted app ends its exchange (behaviour §5, §6 and §7)."""

    # Before or after the start:
    RAISE = "raise"
    RETURN = "return"
    HANG = "hang"
    WAIT_DISCONNECT = "wait_disconnect"
    UNKNOWN = "unknown"  # a message type that is not ASGI's
    # Before the start only:
    BODY_FIRST = "body_first"
    # After the start only:
    FINAL = "final"
    FINAL_THEN_RAISE = "final_then_raise"
    FINAL_THEN_HANG = "final_then_hang"
    FINAL_THEN_RECEIVE = "final_then_receive"
    AFTER_FINAL = "after_final"  # a body message after the final one
    SECOND_START = "second_start"


BEFORE_START_ENDINGS = [
    AppEnding.RAISE,
    AppEnding.RETURN,
    AppEnding.HANG,
    AppEnding.WAIT_DISCONNECT,
    AppEnding.BODY_FIRST,
    AppEnding.UNKNOWN,
]
AFTER_START_ENDINGS = [
    AppEnding.FINAL,
    AppEnding.FINAL_THEN_RAISE,
    AppEnding.FINAL_THEN_HANG,
    AppEnding.FINAL_THEN_RECEIVE,
    AppEnding.AFTER_FINAL,
    AppEnding.RAISE,
    AppEnding.RETURN,
    AppEnding.HANG,
    AppEnding.WAIT_DISCONNECT,
    AppEnding.SECOND_START,
    AppEnding.UNKNOWN,
]
HANGS = {AppEnding.HANG, AppEnding.WAIT_DISCONNECT}
COMPLETES = {
    AppEnding.FINAL,
    AppEnding.FINAL_THEN_RAISE,
    AppEnding.FINAL_THEN_HANG,
    AppEnding.FINAL_THEN_RECEIVE,
    AppEnding.AFTER_FINAL,
}


class ConsumerEnding(enum.StrEnum):
    """How a scripted consumer ends its exchange."""

    READ_ALL = "read_all"
    READ_SOME_CLOSE = "read_some_close"
    CANCELLED_BY_APP = "cancelled_by_app"
    SHORT_TIMEOUT = "short_timeout"
    ABANDON = "abandon"
    OTHER_TASK = "other_task"
    CLIENT_CLOSE = "client_close"


class UploadFailure(enum.Enum):
    """Whether a caller's failing body is read before the response is handed over."""

    NO = enum.auto()
    SURELY = enum.auto()
    MAYBE = enum.auto()


MODES = ["raise", "500", "factory"]


class FuzzAppError(Exception):
    """What a scripted app raises."""


class FuzzAppAbort(BaseException):
    """What a scripted app raises when its script asks for a `BaseException`."""


class FuzzUploadError(Exception):
    """What a scripted caller's request body raises."""


# What a scripted app raises: an `Exception`, a `BaseException` subclass, a group from a task
# group, or a `CancelledError` it raises itself (asyncio; trio has no Cancelled an app can
# raise, so there it raises the subclass). Whichever, behaviour §7 treats it alike.
ERROR_KINDS = ["exception", "base", "group", "cancelled"]


@dataclass(kw_only=True)
class AppScript:
    start: bool
    status: int
    chunks: list[bytes]
    checkpoints: list[bool]
    last: bytes
    ending: AppEnding
    child_sends: bool
    reads_request: bool
    error_kind: str = "exception"


@dataclass(kw_only=True)
class ConsumerScript:
    kind: ConsumerEnding
    count: int  # chunks read before acting (close, cancel, abandon)
    upload_fails: bool = False  # the request body is an async iterator that raises


@dataclass(kw_only=True)
class Setup:
    mode: str
    flavour: str
    max_buffered_chunks: int


@dataclass(kw_only=True)
class Run:
    """What one example's app invocations share with the consumer."""

    app: AppScript
    consumer: ConsumerScript
    entered: int = 0
    returned: int = 0
    raised: list[BaseException] = field(default_factory=list)
    upload_error: BaseException | None = None
    idle: anyio.Event | None = None
    cancel_consumer: anyio.CancelScope | None = None

    async def wait_idle(self) -> None:
        while self.returned < self.entered:
            self.idle = anyio.Event()
            await self.idle.wait()

    def maybe_cancel_consumer(self, at: int) -> None:
        scope = self.cancel_consumer
        if scope is not None and self.consumer.kind is ConsumerEnding.CANCELLED_BY_APP:
            if self.consumer.count == at:
                scope.cancel()


CURRENT: contextvars.ContextVar[Run] = contextvars.ContextVar("fuzz_run")


async def send_chunks(run: Run, send: Send) -> None:
    for index, (piece, checkpoint) in enumerate(
        zip(run.app.chunks, run.app.checkpoints, strict=True)
    ):
        run.maybe_cancel_consumer(index)
        await send(chunk(piece))
        if checkpoint:
            await anyio.lowlevel.checkpoint()


async def fail(run: Run) -> None:
    error = scripted_error(run.app.error_kind)
    run.raised.append(error)
    raise error


def scripted_error(kind: str) -> BaseException:
    if kind == "exception":
        return FuzzAppError("scripted failure")
    if kind == "group":
        return BaseExceptionGroup("from a task group", [FuzzAppAbort("in a child")])
    if kind == "cancelled" and not trio_running():
        return asyncio.CancelledError("raised by the app itself")
    return FuzzAppAbort("scripted failure")


def trio_running() -> bool:
    trio = sys.modules.get("trio")
    return trio is not None and bool(trio.lowlevel.in_trio_run())


async def failing_upload(run: Run) -> Any:
    error = FuzzUploadError("scripted upload failure")
    run.upload_error = error
    raise error
    yield b""  # pragma: no cover (makes this an async generator)


async def scripted_app(scope: Scope, receive: Receive, send: Send) -> None:
    run = CURRENT.get()
    run.entered += 1
    try:
        await play(run, receive, send)
    finally:
        run.returned += 1
        if run.idle is not None and run.returned >= run.entered:
            run.idle.set()


async def play(run: Run, receive: Receive, send: Send) -> None:
    script = run.app
    if script.reads_request:
        await receive()
    if not script.start:
        run.maybe_cancel_consumer(-1)
        await end(run, receive, send, ending=script.ending)
        return
    await send(start(status=script.status))
    if script.child_sends:
        async with anyio.create_task_group() as group:
            group.start_soon(send_chunks, run, send)
    else:
        await send_chunks(run, send)
    run.maybe_cancel_consumer(len(script.chunks))
    await end(run, receive, send, ending=script.ending)


async def end(run: Run, receive: Receive, send: Send, *, ending: AppEnding) -> None:
    match ending:
        case AppEnding.RAISE:
            await fail(run)
        case AppEnding.RETURN:
            return
        case AppEnding.HANG:
            await anyio.sleep_forever()
        case AppEnding.WAIT_DISCONNECT:
            await wait_for_disconnect(receive)
        case AppEnding.BODY_FIRST:
            await send(chunk(b"early", more_body=False))
        case AppEnding.UNKNOWN:
            await send({"type": "http.response.trailers", "headers": []})
        case AppEnding.SECOND_START:
            await send(start())
        case _:
            await send(chunk(run.app.last, more_body=False))
            match ending:
                case AppEnding.FINAL_THEN_RAISE:
                    await fail(run)
                case AppEnding.FINAL_THEN_HANG:
                    await anyio.sleep_forever()
                case AppEnding.FINAL_THEN_RECEIVE:
                    await wait_for_disconnect(receive)
                case AppEnding.AFTER_FINAL:
                    await send(chunk(b"late", more_body=False))


# -- what the consumer saw ---------------------------------------------------------------------


@dataclass
class Seen:
    status: int | None = None
    chunks: list[bytes] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


@dataclass(kw_only=True)
class Expected:
    status: int | None
    chunks: list[bytes]
    error: type[BaseException] | None = None
    error_match: str = ""
    cause: type[BaseException] | None = None
    close_error: type[BaseException] | None = None


# In `Expected`, these stand for the very object the app raised, or the caller's body raised.
APP_ERROR = FuzzAppError
UPLOAD_ERROR = FuzzUploadError


def upload_fails(app: AppScript, consumer: ConsumerScript) -> UploadFailure:
    """Whether the caller's failing body is read before the response is handed over."""
    if not consumer.upload_fails:
        return UploadFailure.NO
    if app.reads_request or (not app.start and app.ending is AppEnding.WAIT_DISCONNECT):
        return UploadFailure.SURELY
    if app.start and app.ending in (AppEnding.WAIT_DISCONNECT, AppEnding.FINAL_THEN_RECEIVE):
        # Read only after the start: the caller may have its response by then; if so, its
        # next read raises the error instead (behaviour §7).
        return UploadFailure.MAYBE
    return UploadFailure.NO


def expected_outcome(app: AppScript, setup: Setup, consumer: ConsumerScript) -> Expected:
    """What reading the whole response gives (behaviour §5, §6 and §7)."""
    raise_mode = setup.mode == "raise"
    module: Any = httpx2 if setup.flavour == "httpx2" else httpx
    if upload_fails(app, consumer) is UploadFailure.SURELY:
        # The caller's own exception, from the request, whatever the app does next (§7).
        return Expected(status=None, chunks=[], error=UPLOAD_ERROR)
    if not app.start:
        if app.ending in HANGS:
            return Expected(status=None, chunks=[], error=module.ReadTimeout)
        if not raise_mode:
            return Expected(status=500, chunks=[b"Internal Server Error"])
        if app.ending is AppEnding.RAISE:
            return Expected(status=None, chunks=[], error=APP_ERROR)
        if app.ending is AppEnding.RETURN:
            return Expected(
                status=None, chunks=[], error=RuntimeError, error_match="returned without starting"
            )
        return Expected(status=None, chunks=[], error=RuntimeError, error_match="ASGI app sent")
    chunks = [piece for piece in app.chunks if piece]
    if app.ending in COMPLETES:
        close_error: type[BaseException] | None = None
        if raise_mode and app.ending is AppEnding.FINAL_THEN_RAISE:
            close_error = APP_ERROR
        if raise_mode and app.ending is AppEnding.AFTER_FINAL:
            close_error = RuntimeError
        return Expected(
            status=app.status,
            chunks=chunks + ([app.last] if app.last else []),
            close_error=close_error,
        )
    if app.ending in HANGS:
        return Expected(status=app.status, chunks=chunks, error=module.ReadTimeout)
    if app.ending is AppEnding.RAISE:
        if raise_mode:  # the app's own exception object, as httpx.ASGITransport raises it
            return Expected(status=app.status, chunks=chunks, error=APP_ERROR)
        return Expected(
            status=app.status, chunks=chunks, error=module.RemoteProtocolError, cause=APP_ERROR
        )
    if app.ending is AppEnding.RETURN:
        return Expected(
            status=app.status,
            chunks=chunks,
            error=module.RemoteProtocolError,
            error_match="incomplete response",
        )
    if raise_mode:  # the RuntimeError its send() raised, which the app raised on
        return Expected(
            status=app.status, chunks=chunks, error=RuntimeError, error_match="ASGI app sent"
        )
    return Expected(
        status=app.status, chunks=chunks, error=module.RemoteProtocolError, cause=RuntimeError
    )


def documented_exception(exc: BaseException, setup: Setup, run: Run) -> bool:
    """Whether `exc` may reach the caller at all (behaviour §7)."""
    if exc is run.upload_error:
        return True  # the caller's own, on every transport
    if setup.mode == "raise" and any(exc is raised for raised in run.raised):
        return True  # the app's own, even a group or a CancelledError
    if isinstance(exc, BaseExceptionGroup):
        return False
    if type(exc).__module__.split(".")[0] in ("httpx", "httpx2"):
        return type(exc).__module__.split(".")[0] == setup.flavour
    if isinstance(exc, AIBridgeTransportError):
        return True
    if setup.mode == "raise":
        return type(exc) is RuntimeError and str(exc).startswith("ASGI app")
    return False


# -- the consumers -----------------------------------------------------------------------------


def make_client(setup: Setup) -> tuple[Any, InProcessTransportFactory | None]:
    """The client, and the factory whose close is the apps' shutdown (behaviour §6)."""
    module: Any = httpx2 if setup.flavour == "httpx2" else httpx
    options: dict[str, Any] = {
        "disconnect_grace": GRACE,
        "max_buffered_chunks": setup.max_buffered_chunks,
        "shutdown_timeout": GRACE,
    }
    factory = None
    if setup.mode == "factory":
        factory = InProcessTransportFactory(scripted_app, **options)
        transport = factory.transport_for("openai", "agents", flavor=setup.flavour)  # type: ignore[call-overload]
    else:
        transport_class: Any = (
            StreamingASGITransport2 if setup.flavour == "httpx2" else StreamingASGITransport
        )
        transport = transport_class(
            app=scripted_app, raise_app_exceptions=setup.mode == "raise", **options
        )
    return module.AsyncClient(transport=transport, base_url="http://testserver"), factory


def read_timeout_for(app: AppScript, consumer: ConsumerScript) -> float | None:
    if consumer.kind is ConsumerEnding.SHORT_TIMEOUT:
        return 0.0
    return HANG_READ_TIMEOUT if app.ending in HANGS else None


async def open_response(client: Any, run: Run, seen: Seen) -> Any:
    timeout = read_timeout_for(run.app, run.consumer)
    module: Any = httpx2 if isinstance(client, httpx2.AsyncClient) else httpx
    content = failing_upload(run) if run.consumer.upload_fails else None
    request = client.build_request(
        "GET", "/v1/chat/completions", timeout=module.Timeout(None, read=timeout), content=content
    )
    response = await client.send(request, stream=True)
    seen.status = response.status_code
    return response


async def read_chunks(response: Any, seen: Seen, limit: int | None) -> bool:
    """Read up to `limit` chunks (all when None); True at the end of the body."""
    # The transport's stream, one chunk per message (behaviour §5), closed right here: no
    # suspended async generator is left for the collector to finalize in a task of its own.
    chunks: Any = response.stream.__aiter__()
    try:
        while limit is None or len(seen.chunks) < limit:
            try:
                seen.chunks.append(await chunks.__anext__())
            except StopAsyncIteration:
                return True
        return False
    finally:
        await chunks.aclose()


@contextmanager
def collect(seen: Seen) -> Iterator[None]:
    try:
        yield
    except BaseException as exc:
        # Any `Exception`, and what the app raised (a `BaseException` in raise mode); not a
        # cancellation of the consumer's own.
        if not isinstance(exc, Exception) and not any(exc is e for e in CURRENT.get().raised):
            raise
        # Without its traceback, an error keeps no frame (and no response) alive.
        seen.errors.append(exc.with_traceback(None))


async def consume(client: Any, run: Run, seen: Seen) -> None:
    kind = run.consumer.kind
    count = run.consumer.count
    if kind in (ConsumerEnding.READ_ALL, ConsumerEnding.SHORT_TIMEOUT):
        with collect(seen):
            async with ClientStream(client, run, seen) as response:
                await read_chunks(response, seen, None)
    elif kind is ConsumerEnding.READ_SOME_CLOSE:
        with collect(seen):
            async with ClientStream(client, run, seen) as response:
                await read_chunks(response, seen, count)
    elif kind is ConsumerEnding.CANCELLED_BY_APP:
        with anyio.CancelScope() as scope:
            run.cancel_consumer = scope
            with collect(seen):
                async with ClientStream(client, run, seen) as response:
                    await read_chunks(response, seen, None)
        run.cancel_consumer = None
    elif kind is ConsumerEnding.ABANDON:
        with collect(seen):
            response = await open_response(client, run, seen)
            await read_chunks(response, seen, count)
        response = None
        gc.collect()
    elif kind is ConsumerEnding.OTHER_TASK:
        with collect(seen):
            response = await open_response(client, run, seen)
            async with anyio.create_task_group() as group:
                group.start_soon(read_and_close, response, seen)
    elif kind is ConsumerEnding.CLIENT_CLOSE:
        with collect(seen):
            async with ClientStream(client, run, seen) as response:
                await read_chunks(response, seen, count)
                await client.aclose()
                with collect(seen):
                    await read_chunks(response, seen, None)


async def read_and_close(response: Any, seen: Seen) -> None:
    with collect(seen):
        try:
            await read_chunks(response, seen, None)
        finally:
            await response.aclose()


class ClientStream:
    """`async with client.stream(...)`, with the read timeout the script asks for."""

    def __init__(self, client: Any, run: Run, seen: Seen) -> None:
        self.client = client
        self.run = run
        self.seen = seen
        self.response: Any = None

    async def __aenter__(self) -> Any:
        self.response = await open_response(self.client, self.run, self.seen)
        return self.response

    async def __aexit__(self, *exc_info: object) -> None:
        await self.response.aclose()


# -- one example -------------------------------------------------------------------------------


def check_outcome(run: Run, setup: Setup, seen: Seen) -> None:
    expected = expected_outcome(run.app, setup, run.consumer)
    for error in seen.errors:
        assert documented_exception(error, setup, run), f"not a documented exception: {error!r}"
    if seen.status is not None and expected.status is not None:
        assert seen.status == expected.status
    assert seen.chunks == expected.chunks[: len(seen.chunks)], "the body is not a prefix"
    if upload_fails(run.app, run.consumer) is UploadFailure.MAYBE and any(
        error is run.upload_error for error in seen.errors
    ):
        # The response was handed over before the body failed: the caller's exception ends
        # it, and nothing else is raised.
        assert all(error is run.upload_error for error in seen.errors), seen.errors
        return
    if run.consumer.kind is not ConsumerEnding.READ_ALL:
        return
    # Read to the end: the outcome is exact (a stalled machine may time out a little early).
    assert seen.status == expected.status
    if expected.error is None or expected.error.__name__ != "ReadTimeout":
        assert seen.chunks == expected.chunks
    errors = list(seen.errors)
    if expected.error is not None:
        assert errors, f"expected {expected.error.__name__}"
        error = errors.pop(0)
        if expected.error is APP_ERROR:
            assert error is run.raised[0], repr(error)
        elif expected.error is UPLOAD_ERROR:
            assert error is run.upload_error, repr(error)
        else:
            assert isinstance(error, expected.error), repr(error)
        assert expected.error_match in str(error)
        if expected.cause is APP_ERROR:
            assert error.__cause__ is run.raised[0], repr(error.__cause__)
        elif expected.cause is not None:
            assert isinstance(error.__cause__, expected.cause), repr(error.__cause__)
    if expected.close_error is APP_ERROR:
        assert errors, "expected the app's exception at close"
        assert errors.pop(0) is run.raised[0]
    elif expected.close_error is not None:
        assert errors, f"expected {expected.close_error.__name__} at close"
        assert isinstance(errors.pop(0), expected.close_error)
    assert errors == []


async def play_example(run: Run, setup: Setup, backend: str) -> None:
    # trio runs system tasks of its own; asyncio, none.
    baseline = other_tasks() if backend == "trio" else set()
    with anyio.fail_after(EXAMPLE_DEADLINE):
        client, factory = make_client(setup)
        seen = Seen()
        CURRENT.set(run)
        with with_delegated_api_key_id("key-1"):
            await consume(client, run, seen)
        check_outcome(run, setup, seen)
        if run.app.ending is not AppEnding.FINAL_THEN_HANG:
            # Behaviour §6: a response closed, cancelled, abandoned or timed out disconnects
            # the app, which is cancelled after the grace period, without closing the client.
            # (An app that hangs after a complete response is never cancelled by its client:
            # its owner's close ends it, below.)
            with anyio.fail_after(GRACE + 5):
                await run.wait_idle()
        await client.aclose()
        if factory is not None:
            await factory.aclose()
    assert run.entered == run.returned
    assert other_tasks() == baseline


def run_example(run: Run, setup: Setup, backend: str) -> None:
    with silent():
        anyio.run(play_example, run, setup, backend, backend=backend)
        gc.collect()


@contextmanager
def silent() -> Iterator[None]:
    """Fails if the block warns, or leaves an exception behind that nobody could catch."""
    unraisable: list[sys.UnraisableHookArgs] = []
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        sys.unraisablehook = previous_hook
    assert [str(warning.message) for warning in caught] == []
    assert [repr(hook.exc_value) for hook in unraisable] == []


# -- strategies --------------------------------------------------------------------------------


def pattern(index: int, size: int) -> bytes:
    return bytes([index % 251 + 1]) * size


chunk_sizes = st.one_of(
    st.just(0), st.integers(1, 64), st.sampled_from([1024, 65_536]), st.integers(0, 4096)
)


@st.composite
def app_scripts(draw: st.DrawFn) -> AppScript:
    start = draw(st.booleans())
    sizes = draw(st.lists(chunk_sizes, max_size=12)) if start else []
    return AppScript(
        start=start,
        status=draw(st.integers(200, 599)),
        chunks=[pattern(index, size) for index, size in enumerate(sizes)],
        checkpoints=[draw(st.booleans()) for _ in sizes],
        last=pattern(99, draw(chunk_sizes)),
        ending=draw(st.sampled_from(AFTER_START_ENDINGS if start else BEFORE_START_ENDINGS)),
        child_sends=draw(st.booleans()),
        reads_request=draw(st.booleans()),
        error_kind=draw(st.sampled_from(ERROR_KINDS)),
    )


consumer_scripts = st.builds(
    ConsumerScript,
    kind=st.sampled_from(ConsumerEnding),
    count=st.integers(-1, 14),
    upload_fails=st.booleans(),
)
setups = st.builds(
    Setup,
    mode=st.sampled_from(MODES),
    flavour=st.sampled_from(["httpx", "httpx2"]),
    max_buffered_chunks=st.sampled_from([0, 1, 8]),
)


def _script(*, start: bool, ending: AppEnding, chunks: list[bytes] | None = None) -> AppScript:
    chunks = chunks or []
    return AppScript(
        start=start,
        status=200,
        chunks=chunks,
        checkpoints=[False] * len(chunks),
        last=b"",
        ending=ending,
        child_sends=False,
        reads_request=True,
    )


def _raising(*, start: bool, error_kind: str, ending: AppEnding, last: bytes = b"") -> AppScript:
    chunks = [b"a"] if start else []
    return AppScript(
        start=start,
        status=200,
        chunks=chunks,
        checkpoints=[False] * len(chunks),
        last=last,
        ending=ending,
        child_sends=False,
        reads_request=False,
        error_kind=error_kind,
    )


READ_ALL = ConsumerScript(kind=ConsumerEnding.READ_ALL, count=0)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(app=app_scripts(), consumer=consumer_scripts, setup=setups)
# Found by this test once, kept so that it always runs: a response dropped after its app had
# ended warned of an unclosed stream.
@example(
    app=_script(start=False, ending=AppEnding.RETURN),
    consumer=ConsumerScript(kind=ConsumerEnding.ABANDON, count=0),
    setup=Setup(mode="500", flavour="httpx", max_buffered_chunks=0),
)
# The BaseExceptions and the failing upload of behaviour §7, each in the mode that shows it.
@example(
    app=_raising(start=False, error_kind="base", ending=AppEnding.RAISE),
    consumer=READ_ALL,
    setup=Setup(mode="raise", flavour="httpx", max_buffered_chunks=1),
)
@example(
    app=_raising(start=True, error_kind="group", ending=AppEnding.RAISE),
    consumer=READ_ALL,
    setup=Setup(mode="factory", flavour="httpx2", max_buffered_chunks=1),
)
@example(
    app=_raising(start=False, error_kind="cancelled", ending=AppEnding.RAISE),
    consumer=READ_ALL,
    setup=Setup(mode="500", flavour="httpx", max_buffered_chunks=8),
)
@example(
    app=_raising(start=True, error_kind="base", ending=AppEnding.FINAL_THEN_RAISE, last=b"b"),
    consumer=READ_ALL,
    setup=Setup(mode="raise", flavour="httpx2", max_buffered_chunks=0),
)
@example(
    app=_script(start=True, ending=AppEnding.FINAL, chunks=[b"a"]),
    consumer=ConsumerScript(kind=ConsumerEnding.READ_ALL, count=0, upload_fails=True),
    setup=Setup(mode="factory", flavour="httpx", max_buffered_chunks=8),
)
def test_scripted_app_against_scripted_consumer(
    backend: str, app: AppScript, consumer: ConsumerScript, setup: Setup
) -> None:
    run_example(Run(app=app, consumer=consumer), setup, backend)


RETURNED: contextvars.ContextVar[anyio.Event] = contextvars.ContextVar("fuzz_returned")


async def final_then_hang(scope: Scope, receive: Receive, send: Send) -> None:
    try:
        await send(start())
        await send(chunk(b"done", more_body=False))
        await anyio.sleep_forever()
    finally:
        RETURNED.get().set()


@pytest.mark.anyio
async def test_a_caller_cancelled_while_closing_leaves_the_app_to_the_transports_close() -> None:
    # Found by the fuzzing above. Closing a complete response waits for the app (behaviour
    # §6); a caller cancelled there leaves it running, never cancelled by its client, and the
    # transport's close ends it within its shutdown timeout: no task is left.
    returned = anyio.Event()
    RETURNED.set(returned)
    transport = StreamingASGITransport(
        app=final_then_hang, disconnect_grace=GRACE, shutdown_timeout=GRACE
    )
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    with anyio.CancelScope() as scope:
        async with client.stream("GET", "/") as response:
            body: Any = response.stream
            assert [chunk async for chunk in body] == [b"done"]
            scope.cancel()
    assert not returned.is_set()
    with anyio.fail_after(GRACE + 5):
        await client.aclose()
    assert returned.is_set()


async def returns_on_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    try:
        await wait_for_disconnect(receive)
    finally:
        RETURNED.get().set()


@pytest.mark.anyio
async def test_an_app_that_returns_after_its_client_left_is_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As under uvicorn: the client timed out, so returning without a response is right,
    # and strict mode has nothing to raise.
    factory = InProcessTransportFactory(returns_on_disconnect, strict=True)
    returned = anyio.Event()
    RETURNED.set(returned)
    async with httpx.AsyncClient(
        transport=factory.transport_for("openai", "agents"), base_url="http://bridge"
    ) as client:
        with with_delegated_api_key_id("key-1"), pytest.raises(httpx.ReadTimeout):
            await client.get("/v1/models", timeout=httpx.Timeout(None, read=0))
        await returned.wait()
    await factory.aclose()
    assert [r for r in caplog.records if r.name == "aibridge_transport"] == []


async def complete_then_return(scope: Scope, receive: Receive, send: Send) -> None:
    try:
        await send(start())
        await send(chunk(b"done", more_body=False))
    finally:
        RETURNED.get().set()


@pytest.mark.anyio
async def test_a_response_dropped_after_its_app_ended_is_released_silently() -> None:
    # Found by the fuzzing above (behaviour §6: nothing warns).
    returned = anyio.Event()
    RETURNED.set(returned)
    transport = StreamingASGITransport(app=complete_then_return, disconnect_grace=GRACE)
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    response = await client.send(client.build_request("GET", "/"), stream=True)
    await returned.wait()
    with silent():
        del response
        gc.collect()
    await client.aclose()
