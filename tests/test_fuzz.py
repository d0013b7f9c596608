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

BEFORE_START_ENDINGS = ["raise", "return", "hang", "wait_disconnect", "body_first", "unknown"]
AFTER_START_ENDINGS = [
    "final",
    "final_then_raise",
    "final_then_hang",
    "final_then_receive",
    "after_final",
    "raise",
    "return",
    "hang",
    "wait_disconnect",
    "second_start",
    "unknown",
]
HANGS = {"hang", "wait_disconnect"}
COMPLETES = {"final", "final_then_raise", "final_then_hang", "final_then_receive", "after_final"}
CONSUMERS = [
    "read_all",
    "read_some_close",
    "cancelled_by_app",
    "short_timeout",
    "abandon",
    "other_task",
    "client_close",
]
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


@dataclass
class AppScript:
    start: bool
    status: int
    chunks: list[bytes]
    checkpoints: list[bool]
    last: bytes
    ending: str
    child_sends: bool
    reads_request: bool
    error_kind: str = "exception"


@dataclass
class ConsumerScript:
    kind: str
    count: int  # chunks read before acting (close, cancel, abandon)
    upload_fails: bool = False  # the request body is an async iterator that raises


@dataclass
class Setup:
    mode: str
    flavour: str
    max_buffered_chunks: int


@dataclass
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
        if scope is not None and self.consumer.kind == "cancelled_by_app":
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
        await end(run, receive, send, script.ending)
        return
    await send(start(status=script.status))
    if script.child_sends:
        async with anyio.create_task_group() as group:
            group.start_soon(send_chunks, run, send)
    else:
        await send_chunks(run, send)
    run.maybe_cancel_consumer(len(script.chunks))
    await end(run, receive, send, script.ending)


async def end(run: Run, receive: Receive, send: Send, ending: str) -> None:
    last = run.app.last
    if ending == "raise":
        await fail(run)
    elif ending == "return":
        return
    elif ending == "hang":
        await anyio.sleep_forever()
    elif ending == "wait_disconnect":
        await wait_for_disconnect(receive)
    elif ending == "body_first":
        await send(chunk(b"early", more_body=False))
    elif ending == "unknown":
        await send({"type": "http.response.trailers", "headers": []})
    elif ending == "second_start":
        await send(start())
    else:
        await send(chunk(last, more_body=False))
        if ending == "final_then_raise":
            await fail(run)
        elif ending == "final_then_hang":
            await anyio.sleep_forever()
        elif ending == "final_then_receive":
            await wait_for_disconnect(receive)
        elif ending == "after_final":
            await send(chunk(b"late", more_body=False))


# -- what the consumer saw ---------------------------------------------------------------------


@dataclass
class Seen:
    status: int | None = None
    chunks: list[bytes] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


@dataclass
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


def upload_fails(app: AppScript, consumer: ConsumerScript) -> str:
    """Whether the caller's failing body is read before the response is handed over."""
    if not consumer.upload_fails:
        return "no"
    if app.reads_request or (not app.start and app.ending == "wait_disconnect"):
        return "surely"
    if app.start and app.ending in ("wait_disconnect", "final_then_receive"):
        # Read only after the start: the caller may have its response by then; if so, its
        # next read raises the error instead (behaviour §7).
        return "maybe"
    return "no"


def expected_outcome(app: AppScript, setup: Setup, consumer: ConsumerScript) -> Expected:
    """What reading the whole response gives (behaviour §5, §6 and §7)."""
    raise_mode = setup.mode == "raise"
    module: Any = httpx2 if setup.flavour == "httpx2" else httpx
    if upload_fails(app, consumer) == "surely":
        # The caller's own exception, from the request, whatever the app does next (§7).
        return Expected(None, [], UPLOAD_ERROR)
    if not app.start:
        if app.ending in HANGS:
            return Expected(None, [], module.ReadTimeout)
        if not raise_mode:
            return Expected(500, [b"Internal Server Error"])
        if app.ending == "raise":
            return Expected(None, [], APP_ERROR)
        if app.ending == "return":
            return Expected(None, [], RuntimeError, "returned without starting")
        return Expected(None, [], RuntimeError, "ASGI app sent")
    chunks = [chunk for chunk in app.chunks if chunk]
    if app.ending in COMPLETES:
        close_error: type[BaseException] | None = None
        if raise_mode and app.ending == "final_then_raise":
            close_error = APP_ERROR
        if raise_mode and app.ending == "after_final":
            close_error = RuntimeError
        return Expected(
            app.status, chunks + ([app.last] if app.last else []), None, "", None, close_error
        )
    if app.ending in HANGS:
        return Expected(app.status, chunks, module.ReadTimeout)
    if app.ending == "raise":
        return Expected(app.status, chunks, module.RemoteProtocolError, "", APP_ERROR)
    if app.ending == "return":
        return Expected(app.status, chunks, module.RemoteProtocolError, "incomplete response")
    return Expected(app.status, chunks, module.RemoteProtocolError, "", RuntimeError)


def contract_exception(exc: BaseException, setup: Setup, run: Run) -> bool:
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


def make_client(setup: Setup) -> Any:
    module: Any = httpx2 if setup.flavour == "httpx2" else httpx
    options: dict[str, Any] = {
        "disconnect_grace": GRACE,
        "max_buffered_chunks": setup.max_buffered_chunks,
    }
    if setup.mode == "factory":
        factory = InProcessTransportFactory(scripted_app, **options)
        transport = factory.transport_for("openai", "agents", flavor=setup.flavour)  # type: ignore[arg-type]
    else:
        transport_class: Any = (
            StreamingASGITransport2 if setup.flavour == "httpx2" else StreamingASGITransport
        )
        transport = transport_class(
            app=scripted_app, raise_app_exceptions=setup.mode == "raise", **options
        )
    return module.AsyncClient(transport=transport, base_url="http://testserver")


def read_timeout_for(app: AppScript, consumer: ConsumerScript) -> float | None:
    if consumer.kind == "short_timeout":
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
    # The transport's stream, one chunk per message (contract 5), closed right here: no
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
    if kind in ("read_all", "short_timeout"):
        with collect(seen):
            async with ClientStream(client, run, seen) as response:
                await read_chunks(response, seen, None)
    elif kind == "read_some_close":
        with collect(seen):
            async with ClientStream(client, run, seen) as response:
                await read_chunks(response, seen, count)
    elif kind == "cancelled_by_app":
        with anyio.CancelScope() as scope:
            run.cancel_consumer = scope
            with collect(seen):
                async with ClientStream(client, run, seen) as response:
                    await read_chunks(response, seen, None)
        run.cancel_consumer = None
    elif kind == "abandon":
        with collect(seen):
            response = await open_response(client, run, seen)
            await read_chunks(response, seen, count)
        response = None
        gc.collect()
    elif kind == "other_task":
        with collect(seen):
            response = await open_response(client, run, seen)
            async with anyio.create_task_group() as group:
                group.start_soon(read_and_close, response, seen)
    elif kind == "client_close":
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
        assert contract_exception(error, setup, run), f"not a contract exception: {error!r}"
    if seen.status is not None and expected.status is not None:
        assert seen.status == expected.status
    assert seen.chunks == expected.chunks[: len(seen.chunks)], "the body is not a prefix"
    if upload_fails(run.app, run.consumer) == "maybe" and any(
        error is run.upload_error for error in seen.errors
    ):
        # The response was handed over before the body failed: the caller's exception ends
        # it, and nothing else is raised.
        assert all(error is run.upload_error for error in seen.errors), seen.errors
        return
    if run.consumer.kind != "read_all":
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
    baseline = trio_system_tasks() if backend == "trio" else None
    with anyio.fail_after(EXAMPLE_DEADLINE):
        client = make_client(setup)
        seen = Seen()
        CURRENT.set(run)
        with with_delegated_api_key_id("key-1"):
            await consume(client, run, seen)
        check_outcome(run, setup, seen)
        # Contract 6: a response closed, cancelled, abandoned or timed out disconnects the app,
        # which is cancelled after the grace period, without closing the client.
        with anyio.fail_after(GRACE + 5):
            await run.wait_idle()
        await client.aclose()
    assert run.entered == run.returned
    if backend == "asyncio":
        assert asyncio.all_tasks() == {asyncio.current_task()}
    else:
        assert trio_system_tasks() == baseline


def trio_system_tasks() -> set[object]:
    import trio

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return {task for nursery in root.child_nurseries for task in nursery.child_tasks}


def run_example(run: Run, setup: Setup, backend: str) -> None:
    unraisable: list[sys.UnraisableHookArgs] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            anyio.run(play_example, run, setup, backend, backend=backend)
            gc.collect()
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
    kind=st.sampled_from(CONSUMERS),
    count=st.integers(-1, 14),
    upload_fails=st.booleans(),
)
setups = st.builds(
    Setup,
    mode=st.sampled_from(MODES),
    flavour=st.sampled_from(["httpx", "httpx2"]),
    max_buffered_chunks=st.sampled_from([0, 1, 8]),
)


def _script(start: bool, ending: str, chunks: list[bytes] | None = None) -> AppScript:
    chunks = chunks or []
    return AppScript(start, 200, chunks, [False] * len(chunks), b"", ending, False, True)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(app=app_scripts(), consumer=consumer_scripts, setup=setups)
# Found by this test once, kept so that it always runs: a response dropped after its app had
# ended warned of an unclosed stream.
@example(
    app=_script(False, "return"),
    consumer=ConsumerScript("abandon", 0),
    setup=Setup("500", "httpx", 0),
)
# The BaseExceptions and the failing upload of behaviour §7, each in the mode that shows it.
@example(
    app=AppScript(False, 200, [], [], b"", "raise", False, False, "base"),
    consumer=ConsumerScript("read_all", 0),
    setup=Setup("raise", "httpx", 1),
)
@example(
    app=AppScript(True, 200, [b"a"], [False], b"", "raise", False, False, "group"),
    consumer=ConsumerScript("read_all", 0),
    setup=Setup("factory", "httpx2", 1),
)
@example(
    app=AppScript(False, 200, [], [], b"", "raise", False, False, "cancelled"),
    consumer=ConsumerScript("read_all", 0),
    setup=Setup("500", "httpx", 8),
)
@example(
    app=AppScript(True, 200, [b"a"], [False], b"b", "final_then_raise", False, False, "base"),
    consumer=ConsumerScript("read_all", 0),
    setup=Setup("raise", "httpx2", 0),
)
@example(
    app=_script(True, "final", [b"a"]),
    consumer=ConsumerScript("read_all", 0, upload_fails=True),
    setup=Setup("factory", "httpx", 8),
)
def test_scripted_app_against_scripted_consumer(
    backend: str, app: AppScript, consumer: ConsumerScript, setup: Setup
) -> None:
    run_example(Run(app, consumer), setup, backend)


RETURNED: contextvars.ContextVar[anyio.Event] = contextvars.ContextVar("fuzz_returned")


async def final_then_hang(scope: Scope, receive: Receive, send: Send) -> None:
    try:
        await send(start())
        await send(chunk(b"done", more_body=False))
        await anyio.sleep_forever()
    finally:
        RETURNED.get().set()


@pytest.mark.anyio
async def test_a_caller_cancelled_while_closing_still_disconnects_the_app() -> None:
    # Found by the fuzzing above. In raise mode, closing waits for the app (contract 7);
    # a caller cancelled there must still disconnect it, so it ends after the grace period
    # without the client being closed (contract 6).
    returned = anyio.Event()
    RETURNED.set(returned)
    transport = StreamingASGITransport(app=final_then_hang, disconnect_grace=GRACE)
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    with anyio.CancelScope() as scope:
        async with client.stream("GET", "/") as response:
            body: Any = response.stream
            assert [chunk async for chunk in body] == [b"done"]
            scope.cancel()
    with anyio.fail_after(GRACE + 5):
        await returned.wait()
    await client.aclose()


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
    # Found by the fuzzing above (contract 6: nothing warns).
    returned = anyio.Event()
    RETURNED.set(returned)
    transport = StreamingASGITransport(app=complete_then_return, disconnect_grace=GRACE)
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    response = await client.send(client.build_request("GET", "/"), stream=True)
    await returned.wait()
    unraisable: list[sys.UnraisableHookArgs] = []
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del response
            gc.collect()
    finally:
        sys.unraisablehook = previous_hook
    assert [str(warning.message) for warning in caught] == []
    assert unraisable == []
    await client.aclose()
