"""The scenarios: each measures one client once and returns its metrics (seconds, bytes, counts)."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from bench_app import CHUNK_SIZE, ECHO_SIZE, PROGRESS, SSE_EVENT, SSE_EVENTS, STREAM_SIZE
from bench_clients import Client

__all__ = ["SCENARIOS", "Scenario", "Settings", "peak_heap"]

ECHO_PAYLOAD = b"e" * ECHO_SIZE
MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    rounds: int
    small_batch: int
    echo_batch: int
    concurrency: int
    concurrent_rounds: int
    slow_delay: float
    slow_sizes: tuple[int, int]
    # Round the timed scenarios up to whole cycles of the client order (see `run.py`).
    whole_cycles: bool = False


Measure = Callable[[Client, Settings], Awaitable[dict[str, float]]]


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    measure: Measure
    # "rounds": timed in interleaved rounds; "once": measured once per client (memory, counts).
    mode: str = "rounds"


async def small_json(client: Client, settings: Settings) -> dict[str, float]:
    start = time.perf_counter()
    for _ in range(settings.small_batch):
        body = await client.request("GET", "/small", b"")
    elapsed = time.perf_counter() - start
    assert body.startswith(b"{")
    return {"latency": elapsed / settings.small_batch}


async def echo_1mib(client: Client, settings: Settings) -> dict[str, float]:
    start = time.perf_counter()
    for _ in range(settings.echo_batch):
        body = await client.request("POST", "/echo", ECHO_PAYLOAD)
    elapsed = time.perf_counter() - start
    assert len(body) == ECHO_SIZE
    return {"latency": elapsed / settings.echo_batch}


async def echo_heap(client: Client, settings: Settings) -> dict[str, float]:
    # Starlette's `request.body()` joins the chunks it read with a final b"", so the app
    # itself holds one copy: a client that copies nothing peaks at about 1 MiB, as direct does.
    async def one() -> None:
        assert len(await client.request("POST", "/echo", ECHO_PAYLOAD)) == ECHO_SIZE

    return {"peak_heap": await peak_heap(one)}


async def _first_and_total(client: Client, path: str, expected: int) -> dict[str, float]:
    first = 0.0
    received = 0

    async def on_chunk(chunk: bytes) -> None:
        nonlocal first, received
        if not received:
            first = time.perf_counter()
        received += len(chunk)

    start = time.perf_counter()
    await client.stream(path, on_chunk)
    end = time.perf_counter()
    assert received == expected, (received, expected)
    return {"first": first - start, "total": end - start}


async def stream_8mib(client: Client, settings: Settings) -> dict[str, float]:
    return await _first_and_total(client, "/stream", STREAM_SIZE)


async def sse_500(client: Client, settings: Settings) -> dict[str, float]:
    return await _first_and_total(client, "/sse", SSE_EVENTS * len(SSE_EVENT))


async def _concurrent(client: Client, count: int) -> None:
    async def one() -> None:
        assert await client.request("GET", "/small", b"")

    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(one)


async def concurrent_small(client: Client, settings: Settings) -> dict[str, float]:
    start = time.perf_counter()
    await _concurrent(client, settings.concurrency)
    return {"wall": time.perf_counter() - start}


async def peak_heap(work: Callable[[], Awaitable[object]]) -> float:
    """Peak bytes allocated (and not freed before `work` started) while `work` runs."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        await work()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return float(peak - base)


async def concurrent_heap(client: Client, settings: Settings) -> dict[str, float]:
    heap = await peak_heap(lambda: _concurrent(client, settings.concurrency))
    return {"peak_heap": heap}


async def _slow_consumer(client: Client, size: int, delay: float) -> float:
    """Read `size` bytes, sleeping `delay` per 64 KiB; the most chunks the app ran ahead."""
    PROGRESS.produced = 0
    consumed = 0
    slept_for = 0
    most_ahead = 0

    async def on_chunk(chunk: bytes) -> None:
        nonlocal consumed, slept_for, most_ahead
        consumed += len(chunk)
        done = consumed // CHUNK_SIZE
        most_ahead = max(most_ahead, PROGRESS.produced - done)
        if done > slept_for:
            await anyio.sleep(delay * (done - slept_for))
            slept_for = done

    await client.stream(f"/stream?size={size}", on_chunk)
    assert consumed == size
    return float(most_ahead)


async def slow_consumer(client: Client, settings: Settings) -> dict[str, float]:
    small_size, large_size = settings.slow_sizes
    metrics: dict[str, float] = {}
    ahead: list[float] = []

    async def run(size: int) -> None:
        ahead.append(await _slow_consumer(client, size, settings.slow_delay))

    metrics["peak_heap"] = await peak_heap(lambda: run(small_size))
    metrics["peak_heap_4x"] = await peak_heap(lambda: run(large_size))
    metrics["chunks_ahead"] = max(ahead)
    return metrics


SCENARIOS = (
    Scenario("small_json", "small JSON GET", small_json),
    Scenario("echo_1mib", "1 MiB POST echoed", echo_1mib),
    Scenario("echo_1mib_heap", "1 MiB POST echoed", echo_heap, "once"),
    Scenario("stream_8mib", "8 MiB streamed GET (64 KiB chunks)", stream_8mib),
    Scenario("sse_500", "500 SSE events of 100 B", sse_500),
    Scenario("concurrent_1000", "1000 concurrent small GETs", concurrent_small),
    Scenario("concurrent_1000_heap", "1000 concurrent small GETs", concurrent_heap, "once"),
    Scenario("slow_consumer", "slow consumer of the stream", slow_consumer, "once"),
)
