"""Sync clients side by side against the benchmark app, interleaved round by round.

    python benchmarks/run.py --sync            # or: python benchmarks/bench_sync.py
    python benchmarks/run.py --sync --quick

The clients: Starlette's `TestClient` entered with `with` (the sync in-process anchor), the
library's own async path (`httpx.AsyncClient` on the factory, the same process), uvicorn on
127.0.0.1 with `httpx.Client`, and ours sync (`httpx.Client` on the factory entered with
`with`). Ratios are medians of the per-round ratios to `TestClient`, or to our async path.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import httpx
from bench_app import BRIDGE_PREFIX, SSE_EVENT, SSE_EVENTS, STREAM_SIZE, app
from bench_clients import UvicornThread
from starlette.testclient import TestClient

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id

__all__ = ["main"]

TESTCLIENT, OURS_ASYNC, UVICORN_SYNC, OURS_SYNC = (
    "testclient",
    "ours-async",
    "uvicorn-sync",
    "ours-sync",
)

# Metric -> client -> one value per round.
Rounds = dict[str, dict[str, list[float]]]

# (label, metric, client, reference, limit): client / reference <= limit.
TARGETS: list[tuple[str, str, str, str, float]] = [
    ("small JSON vs TestClient", "small", OURS_SYNC, TESTCLIENT, 0.3),
    ("small JSON vs our async path", "small", OURS_SYNC, OURS_ASYNC, 2.0),
    ("SSE first event vs TestClient", "sse_first", OURS_SYNC, TESTCLIENT, 0.3),
    ("SSE total vs TestClient", "sse_total", OURS_SYNC, TESTCLIENT, 0.3),
    ("8 MiB total vs TestClient", "stream_total", OURS_SYNC, TESTCLIENT, 0.5),
]


def _stream(get: Callable[[], Any], expected: int) -> tuple[float, float]:
    start = time.perf_counter()
    first = 0.0
    received = 0
    with get() as response:
        for chunk in response.iter_raw():
            if not received:
                first = time.perf_counter()
            received += len(chunk)
    assert received == expected, (received, expected)
    return first - start, time.perf_counter() - start


def measure_sync(client: Any, prefix: str, batch: int, threads: int, per_thread: int) -> Any:
    result: dict[str, float] = {}
    start = time.perf_counter()
    for _ in range(batch):
        assert client.get(prefix + "/small").content.startswith(b"{")
    result["small"] = (time.perf_counter() - start) / batch
    result["stream_first"], result["stream_total"] = _stream(
        lambda: client.stream("GET", prefix + "/stream"), STREAM_SIZE
    )
    result["sse_first"], result["sse_total"] = _stream(
        lambda: client.stream("GET", prefix + "/sse"), SSE_EVENTS * len(SSE_EVENT)
    )

    def worker() -> None:
        with with_delegated_api_key_id("bench"):
            for _ in range(per_thread):
                assert client.get(prefix + "/small").status_code == 200

    start = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    result["threads_wall"] = time.perf_counter() - start
    return result


async def _measure_async(client: httpx.AsyncClient, batch: int) -> dict[str, float]:
    result: dict[str, float] = {}
    start = time.perf_counter()
    for _ in range(batch):
        assert (await client.get("/small")).content.startswith(b"{")
    result["small"] = (time.perf_counter() - start) / batch
    for name, path, expected in (
        ("stream", "/stream", STREAM_SIZE),
        ("sse", "/sse", SSE_EVENTS * len(SSE_EVENT)),
    ):
        start = time.perf_counter()
        first = 0.0
        received = 0
        async with client.stream("GET", path) as response:
            async for chunk in response.aiter_raw():
                if not received:
                    first = time.perf_counter()
                received += len(chunk)
        assert received == expected
        result[f"{name}_first"] = first - start
        result[f"{name}_total"] = time.perf_counter() - start
    return result


async def measure_async(batch: int) -> dict[str, float]:
    async with InProcessTransportFactory(app) as factory:
        transport = factory.transport_for("openai", Source.AGENTS)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await _measure_async(client, batch)  # warm-up
            return await _measure_async(client, batch)


def run(rounds: int, batch: int, threads: int, per_thread: int) -> tuple[Rounds, tuple[int, int]]:
    samples: Rounds = {}
    before = threading.active_count()
    server = UvicornThread(app)
    server.start()
    extra_threads = (0, 0)
    try:
        with (
            with_delegated_api_key_id("bench"),
            TestClient(app, base_url="http://bench") as testclient,
            InProcessTransportFactory(app) as factory,
            httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as uvicorn_client,
            httpx.Client(
                transport=factory.transport_for("openai", Source.AGENTS), base_url="http://bench"
            ) as ours,
        ):
            sync_clients: dict[str, tuple[Any, str]] = {
                TESTCLIENT: (testclient, BRIDGE_PREFIX),
                UVICORN_SYNC: (uvicorn_client, BRIDGE_PREFIX),
                OURS_SYNC: (ours, ""),
            }
            names = [*sync_clients, OURS_ASYNC]
            for round_index in range(rounds):
                # A rotated order each round, so what one client leaves behind slows all alike.
                order = names[round_index % len(names) :] + names[: round_index % len(names)]
                for name in order:
                    if name == OURS_ASYNC:
                        result = anyio.run(measure_async, batch)
                    else:
                        client, prefix = sync_clients[name]
                        result = measure_sync(client, prefix, batch, threads, per_thread)
                    for metric, value in result.items():
                        samples.setdefault(metric, {}).setdefault(name, []).append(value)
            # With everything still open, after the 50-thread scenario: beyond the threads
            # at the start, uvicorn's and TestClient's portal belong to the anchors.
            extra_threads = (
                threading.active_count() - before,
                sum(t.name == "aibridge-transport-loop" for t in threading.enumerate()),
            )
    finally:
        server.stop()
    return samples, extra_threads


def ratio(samples: Rounds, metric: str, client: str, reference: str) -> float:
    values = samples[metric]
    return statistics.median(a / b for a, b in zip(values[client], values[reference], strict=True))


def report(samples: Rounds, extra_threads: tuple[int, int]) -> str:
    lines = [f"{'metric':<14}" + "".join(f"{name:>14}" for name in samples["small"])]
    for metric, by_client in samples.items():
        cells = "".join(f"{statistics.median(v) * 1e3:>12.3f}ms" for v in by_client.values())
        lines.append(f"{metric:<14}{cells}")
    lines.append("")
    lines.append("targets (ours-sync):")
    for label, metric, client, reference, limit in TARGETS:
        value = ratio(samples, metric, client, reference)
        verdict = "met" if value <= limit else "NOT MET"
        lines.append(f"  {label:<32} {value:5.2f}x  (target <= {limit}x)  {verdict}")
    total, ours = extra_threads
    verdict = "met" if ours <= 1 else "NOT MET"
    lines.append(
        f"  {'threads of ours alive at the end':<32} {ours:5d}   (target <= 1)     {verdict}"
        f"  ({total} beyond the start, the anchors' included)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few rounds")
    parser.add_argument("--rounds", type=int, default=0)
    args, _ = parser.parse_known_args(argv)
    rounds = args.rounds or (3 if args.quick else 12)
    batch = 50 if args.quick else 200
    samples, extra = run(rounds, batch, threads=50, per_thread=20)
    print(report(samples, extra))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
