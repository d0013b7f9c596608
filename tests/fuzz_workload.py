"""Long-running workloads shared by the soak and load tests and `scripts/soak.py`, `load.py`.

Soak: many mixed exchanges (streaming, early close, crashes, `BaseException`s, timeouts,
cancellations, abandoned responses, request bodies that raise) through the generic transport
in both modes and the in-process factory, with memory and task counts sampled at checkpoints.
Load: many streams open at once on one event loop, read in lock step one chunk per round, with
peak memory against the buffer bound.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import httpx
from asgi import chunk, start, wait_for_disconnect

from aibridge_transport import (
    InProcessTransportFactory,
    StreamingASGITransport,
    with_delegated_api_key_id,
)
from aibridge_transport.testing import live_exchanges, wait_apps_ended
from aibridge_transport.types import Receive, Scope, Send

__all__ = [
    "KINDS",
    "Checkpoint",
    "Ending",
    "LoadReport",
    "live_tasks",
    "other_tasks",
    "run_load",
    "run_soak",
]

GRACE = 0.01
TIMEOUT = 0.005
CHUNK = 1024


class WorkloadError(Exception):
    """What the crashing apps raise."""


class WorkloadAbort(BaseException):
    """What an app raises that is not an `Exception` (behaviour §7: a failure all the same)."""


class UploadError(Exception):
    """What a caller's request body raises (behaviour §7: never the app's failure)."""


async def stream_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Streams `?<count>x<size>` chunks, each a fresh object, then ends the body."""
    count, _, size = scope["query_string"].decode().partition("x")
    await send(start())
    for _ in range(int(count)):
        await send(chunk(bytes(int(size or CHUNK))))
    await send(chunk(b"", more_body=False))


async def crash_before_start_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise WorkloadError("before start")


async def crash_mid_stream_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start())
    await send(chunk(b"partial"))
    raise WorkloadError("mid stream")


async def crash_base_before_start_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise WorkloadAbort("before start")


async def read_body_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the request body to its end (or the disconnect), then answers."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if not message.get("more_body", False):
            break
    await send(start())
    await send(chunk(b"read", more_body=False))


async def failing_upload() -> Any:
    yield b"part"
    raise UploadError("the caller's body")


async def slow_start_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Waits for the disconnect before starting: only a read timeout ends the wait."""
    await wait_for_disconnect(receive)


async def final_then_work_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Works on after its final body (a background task), never cancelled by its client."""
    await receive()  # the (empty) request body
    await send(start())
    await send(chunk(b"done", more_body=False))
    for _ in range(3):
        await anyio.lowlevel.checkpoint()
    assert (await receive())["type"] == "http.disconnect"  # the response is complete


ROUTES = {
    "/stream": stream_app,
    "/crash-before-start": crash_before_start_app,
    "/crash-mid-stream": crash_mid_stream_app,
    "/slow-start": slow_start_app,
    "/final-then-work": final_then_work_app,
    "/crash-base-before-start": crash_base_before_start_app,
    "/read-body": read_body_app,
}


async def workload_app(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope["path"].removeprefix("/api/v2/aibridge/openai")
    await ROUTES[path](scope, receive, send)


# -- soak --------------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    exchanges: int
    traced_bytes: int
    tasks: int
    live_exchanges: int
    seconds: float


@dataclass
class Tally:
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, name: str) -> None:
        self.outcomes[name] = self.outcomes.get(name, 0) + 1


def other_tasks() -> set[object]:
    """Tasks on the running loop other than the current one (trio: its system tasks too)."""
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        root = trio.lowlevel.current_root_task()
        tasks = {task for nursery in root.child_nurseries for task in nursery.child_tasks}
        return tasks - {trio.lowlevel.current_task()}
    return set(asyncio.all_tasks() - {asyncio.current_task()})


def live_tasks() -> int:
    """How many tasks run on the loop besides the current one (trio: its system tasks too)."""
    return len(other_tasks())


async def _read_some(response: httpx.Response, count: int) -> None:
    # The transport stream itself, closed here: no async generator is left for the collector.
    stream: Any = response.stream
    chunks = stream.__aiter__()
    try:
        for _ in range(count):
            await chunks.__anext__()
    finally:
        await chunks.aclose()


class Ending(enum.Enum):
    """How a soak exchange ends; the soak plays them in this order, round and round."""

    STREAMED = enum.auto()  # read to the end
    CLOSED_EARLY = enum.auto()  # closed while the app still streams
    CRASH_BEFORE_START = enum.auto()  # the app raises an `Exception` before it starts
    CRASH_MID_STREAM = enum.auto()  # the app raises after some of the body
    READ_TIMEOUT = enum.auto()  # the app never starts; the caller's read timeout ends it
    CANCELLED = enum.auto()  # the caller is cancelled mid-body
    ABANDONED = enum.auto()  # dropped unclosed: released by the garbage collector
    FINAL_THEN_WORK = enum.auto()  # the app runs on after its last body message
    CRASH_BASE_BEFORE_START = enum.auto()  # the app raises a `BaseException` before it starts
    UPLOAD_FAILS = enum.auto()  # the caller's request body raises


KINDS = tuple(Ending)


async def _exchange(client: httpx.AsyncClient, ending: Ending, tally: Tally) -> None:
    try:
        match ending:
            case Ending.STREAMED:
                async with client.stream("GET", "/stream?8") as response:
                    async for _ in response.aiter_raw():
                        pass
                tally.add("streamed")
            case Ending.CLOSED_EARLY:
                async with client.stream("GET", "/stream?64") as response:
                    await _read_some(response, 1)
                tally.add("closed early")
            case Ending.CRASH_BEFORE_START:
                response = await client.get("/crash-before-start")
                tally.add(f"crash before start: {response.status_code}")
            case Ending.CRASH_MID_STREAM:
                async with client.stream("GET", "/crash-mid-stream") as response:
                    await response.aread()
            case Ending.READ_TIMEOUT:
                await client.get("/slow-start", timeout=httpx.Timeout(None, read=TIMEOUT))
            case Ending.CANCELLED:
                with anyio.CancelScope() as scope:
                    async with client.stream("GET", "/stream?64") as response:
                        await _read_some(response, 1)
                        scope.cancel()
                        await anyio.lowlevel.checkpoint()
                tally.add("cancelled")
            case Ending.ABANDONED:
                request = client.build_request("GET", "/stream?64")
                response = await client.send(request, stream=True)
                await _read_some(response, 1)
                del response
                tally.add("abandoned")
            case Ending.FINAL_THEN_WORK:
                async with client.stream("GET", "/final-then-work") as response:
                    await response.aread()
                tally.add("app ran on after the body")
            case Ending.CRASH_BASE_BEFORE_START:
                response = await client.get("/crash-base-before-start")
                tally.add(f"crash before start: {response.status_code}")
            case Ending.UPLOAD_FAILS:
                await client.post("/read-body", content=failing_upload())
    except httpx.ReadTimeout:
        tally.add("read timeout")
    except httpx.RemoteProtocolError:
        tally.add("remote protocol error")
    except (WorkloadError, WorkloadAbort):
        tally.add("app error raised")
    except UploadError:
        tally.add("upload error raised")


def _transports() -> list[httpx.AsyncBaseTransport]:
    """The generic transport in raise mode and in 500 mode, and the in-process factory's."""
    factory = InProcessTransportFactory(workload_app, disconnect_grace=GRACE)
    return [
        StreamingASGITransport(app=workload_app, disconnect_grace=GRACE),
        StreamingASGITransport(
            app=workload_app, raise_app_exceptions=False, disconnect_grace=GRACE
        ),
        factory.transport_for("openai", "agents"),
    ]


async def _apps_ended(transports: list[httpx.AsyncBaseTransport]) -> int:
    """Wait for apps still within their grace period; return how many exchanges stay live."""
    for transport in transports:
        await wait_apps_ended(transport)
    return sum(live_exchanges(transport) for transport in transports)


async def run_soak(
    total: int,
    *,
    every: int = 1000,
    concurrency: int = 100,
    report: Callable[[Checkpoint], None] | None = None,
) -> tuple[list[Checkpoint], Tally, int]:
    """Run `total` mixed exchanges, `concurrency` at a time; sample at every `every`.

    Returns the checkpoints, the outcome tally, and the tasks left after closing; task
    counts leave out the tasks the loop itself ran before the soak (trio has one).
    """
    baseline_tasks = live_tasks()
    transports = _transports()
    clients = [httpx.AsyncClient(transport=t, base_url="http://bridge") for t in transports]
    tally = Tally()
    checkpoints: list[Checkpoint] = []
    started = time.perf_counter()
    done = 0
    with with_delegated_api_key_id("key-1"):
        while done < total:
            batch = min(concurrency, total - done)
            async with anyio.create_task_group() as group:
                for index in range(done, done + batch):
                    client = clients[index % len(clients)]
                    ending = KINDS[(index // len(clients)) % len(KINDS)]
                    group.start_soon(_exchange, client, ending, tally)
            done += batch
            if done % every == 0 or done == total:
                gc.collect()
                # Apps still within their grace period end first: then every sample is alike.
                with anyio.fail_after(5):
                    live = await _apps_ended(transports)
                gc.collect()
                checkpoint = Checkpoint(
                    exchanges=done,
                    traced_bytes=tracemalloc.get_traced_memory()[0],
                    tasks=live_tasks() - baseline_tasks,
                    live_exchanges=live,
                    seconds=time.perf_counter() - started,
                )
                checkpoints.append(checkpoint)
                if report is not None:
                    report(checkpoint)
    for client in clients:
        await client.aclose()
    gc.collect()
    return checkpoints, tally, live_tasks() - baseline_tasks


# -- load --------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    streams: int
    chunks_per_stream: int
    chunk_bytes: int
    buffer_bytes: int
    body_bytes: int
    baseline_bytes: int
    peak_bytes: int
    completed: int
    tasks_left: int
    live_left: int
    seconds: float

    @property
    def peak_per_stream(self) -> float:
        return (self.peak_bytes - self.baseline_bytes) / self.streams


class LockStep:
    """A reusable barrier: every reader takes one chunk per round (no sleeps)."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.waiting = 0
        self.round = anyio.Event()

    async def wait(self) -> None:
        current = self.round
        self.waiting += 1
        if self.waiting == self.parties:
            self.waiting = 0
            self.round = anyio.Event()
            current.set()
        else:
            await current.wait()

    def leave(self) -> None:
        self.parties -= 1
        if self.parties and self.waiting == self.parties:
            self.waiting = 0
            current, self.round = self.round, anyio.Event()
            current.set()


async def _slow_reader(
    client: httpx.AsyncClient, chunks: int, size: int, step: LockStep, done: list[int]
) -> None:
    try:
        async with client.stream("GET", f"/stream?{chunks}x{size}") as response:
            received = 0
            async for chunk in response.aiter_raw():
                received += len(chunk)
                await step.wait()
            if received == chunks * size:
                done.append(1)
    finally:
        step.leave()


async def run_load(
    streams: int, *, chunks: int = 32, chunk_bytes: int = CHUNK, max_buffered_chunks: int = 8
) -> LoadReport:
    """Open `streams` streams at once and read them in lock step; trace peak memory."""
    transport = StreamingASGITransport(
        app=workload_app, disconnect_grace=GRACE, max_buffered_chunks=max_buffered_chunks
    )
    client = httpx.AsyncClient(transport=transport, base_url="http://bridge")
    baseline_tasks = live_tasks()
    gc.collect()
    baseline = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    started = time.perf_counter()
    step = LockStep(streams)
    done: list[int] = []
    async with anyio.create_task_group() as group:
        for _ in range(streams):
            group.start_soon(_slow_reader, client, chunks, chunk_bytes, step, done)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    live = live_exchanges(transport)
    await client.aclose()
    gc.collect()
    return LoadReport(
        streams=streams,
        chunks_per_stream=chunks,
        chunk_bytes=chunk_bytes,
        buffer_bytes=max_buffered_chunks * chunk_bytes,
        body_bytes=chunks * chunk_bytes,
        baseline_bytes=baseline,
        peak_bytes=peak,
        completed=len(done),
        tasks_left=live_tasks() - baseline_tasks,
        live_left=live,
        seconds=seconds,
    )
