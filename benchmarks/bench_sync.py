"""Sync clients side by side against the benchmark app, interleaved round by round.

    python benchmarks/run.py --sync            # or: python benchmarks/bench_sync.py
    python benchmarks/run.py --sync --quick
    python benchmarks/run.py --sync --json out.json

The clients: Starlette's `TestClient` entered with `with` (the sync in-process anchor), the
library's own async path (`httpx.AsyncClient` on the factory, the same process), uvicorn on
127.0.0.1 with `httpx.Client`, and ours sync (`httpx.Client` on the factory entered with
`with`). Ratios are medians of the per-round ratios to `TestClient`, or to our async path.
`run.py` writes the results as JSON, with the run's machine and versions beside them.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import httpx
from bench_app import BRIDGE_PREFIX, SSE_EVENT, SSE_EVENTS, STREAM_SIZE, app
from bench_clients import UvicornThread
from run import fmt, paired_ratio, summary
from starlette.testclient import TestClient

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id

__all__ = ["analyse", "collect", "console_report", "main", "markdown_report", "run", "settings"]

TESTCLIENT, OURS_ASYNC, UVICORN_SYNC, OURS_SYNC = (
    "testclient",
    "ours-async",
    "uvicorn-sync",
    "ours-sync",
)

# Metric -> client -> one value per round.
Rounds = dict[str, dict[str, list[float]]]

CLIENTS = (TESTCLIENT, OURS_ASYNC, UVICORN_SYNC, OURS_SYNC)
REFERENCES = {TESTCLIENT: "TestClient", OURS_ASYNC: "our async path"}

METRICS = {
    "small": "small JSON: latency",
    "stream_first": "8 MiB stream: first byte",
    "stream_total": "8 MiB stream: total",
    "sse_first": "500 SSE events: first event",
    "sse_total": "500 SSE events: total",
    "threads_wall": "50 threads x 20 requests: wall time",
}

# (label, metric, client, reference, limit): client / reference <= limit.
TARGETS: list[tuple[str, str, str, str, float]] = [
    ("small JSON vs TestClient", "small", OURS_SYNC, TESTCLIENT, 0.3),
    ("small JSON vs our async path", "small", OURS_SYNC, OURS_ASYNC, 2.0),
    ("SSE first event vs TestClient", "sse_first", OURS_SYNC, TESTCLIENT, 0.3),
    ("SSE total vs TestClient", "sse_total", OURS_SYNC, TESTCLIENT, 0.3),
    ("8 MiB total vs TestClient", "stream_total", OURS_SYNC, TESTCLIENT, 0.5),
]
THREADS_TARGET = "threads of ours alive at the end"
MAX_EXTRA_THREADS = 1


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


def measure_sync(
    client: Any, prefix: str, batch: int, threads: int, per_thread: int, failures: list[str]
) -> dict[str, float]:
    """One round of one sync client; a request that fails in the threads lands in `failures`."""
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
                # Recorded, not raised: a thread's exception would only be printed, and the
                # wall time would count the requests it never sent as done.
                try:
                    status = client.get(prefix + "/small").status_code
                except Exception as exc:
                    failures.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
                    continue
                if status != 200:
                    failures.append(f"status {status}")

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


def run(
    rounds: int, batch: int, threads: int, per_thread: int
) -> tuple[Rounds, tuple[int, int], dict[str, list[str]]]:
    samples: Rounds = {}
    failures: dict[str, list[str]] = {}
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
                        result = measure_sync(
                            client,
                            prefix,
                            batch,
                            threads,
                            per_thread,
                            failures.setdefault(name, []),
                        )
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
    return samples, extra_threads, failures


def analyse(
    samples: Rounds, extra_threads: tuple[int, int], failures: dict[str, list[str]]
) -> dict[str, Any]:
    """Summaries, ratios and targets: what `run.py --sync` writes as JSON."""
    results: dict[str, Any] = {}
    for metric, by_client in samples.items():
        row: dict[str, Any] = {}
        for name in CLIENTS:
            if name not in by_client:
                continue
            values = by_client[name]
            entry: dict[str, Any] = summary(values)
            entry["samples"] = values
            for reference in REFERENCES:
                if reference != name and reference in by_client:
                    entry[f"vs_{reference}"] = paired_ratio(values, by_client[reference])
            row[name] = entry
        results[metric] = row
    targets: list[dict[str, Any]] = []
    for label, metric, client, reference, limit in TARGETS:
        row = results[metric]
        value = row[client][f"vs_{reference}"]
        # What our async path, measured in the same rounds, reaches on the same metric: the
        # sync path runs the app on that path and adds a hand-over between threads to it.
        floor = row[OURS_ASYNC].get(f"vs_{reference}") if reference != OURS_ASYNC else None
        targets.append(
            {
                "target": label,
                "metric": metric,
                "client": client,
                "reference": reference,
                "value": value,
                "limit": limit,
                "met": value <= limit,
                "floor": floor,
            }
        )
    total, ours = extra_threads
    targets.append(
        {
            "target": THREADS_TARGET,
            "metric": "threads",
            "client": OURS_SYNC,
            "reference": None,
            "value": ours,
            "limit": MAX_EXTRA_THREADS,
            "met": ours <= MAX_EXTRA_THREADS,
            "floor": None,
        }
    )
    return {
        "results": results,
        "threads": {"ours": ours, "beyond_start": total},
        "targets": targets,
        # Failed requests of the threads scenario, per client: the count and the first error.
        "failures": {
            name: {"count": len(errors), "first": errors[0]}
            for name, errors in failures.items()
            if errors
        },
    }


def _cell(metric: str, entry: dict[str, Any] | None, client: str) -> str:
    if entry is None:
        return "-"
    cell = fmt(metric, entry["median"])
    vs = entry.get(f"vs_{TESTCLIENT}")
    if vs is not None and client != TESTCLIENT:
        cell += f" ({vs:.2f}x)"
    return cell


def _measured(row: dict[str, Any]) -> tuple[str, str, str]:
    """A target row as text: (measured, limit, floor)."""
    if row["reference"] is None:
        return f"{row['value']:.0f}", f"<= {row['limit']:.0f}", "-"
    floor = "-" if row["floor"] is None else f"{row['floor']:.2f}x"
    return f"{row['value']:.2f}x", f"<= {row['limit']:.2f}x", floor


def console_report(data: dict[str, Any]) -> str:
    results = data["results"]
    lines = [f"{'metric':<38}" + "".join(f"{name:>24}" for name in CLIENTS)]
    for metric, row in results.items():
        cells = "".join(f"{_cell(metric, row.get(name), name):>24}" for name in CLIENTS)
        lines.append(f"{METRICS.get(metric, metric):<38}{cells}")
    lines.append("")
    lines.append(f"targets ({OURS_SYNC}; floor: {OURS_ASYNC} against the same reference):")
    for row in data["targets"]:
        value, limit, floor = _measured(row)
        verdict = "met" if row["met"] else "MISSED"
        lines.append(f"  {row['target']:<34}{value:>8}{limit:>10}  {verdict:<7} floor {floor}")
    lines.append(
        f"  ({data['threads']['beyond_start']} threads beyond the start, the anchors' included)"
    )
    lines += failure_notes(data)
    return "\n".join(lines)


def failure_notes(data: dict[str, Any]) -> list[str]:
    return [
        f"In the threads scenario, {failure['count']} requests of {name} failed over the "
        f"run (the first: `{failure['first']}`); its wall time includes them."
        for name, failure in data.get("failures", {}).items()
    ]


def markdown_report(data: dict[str, Any]) -> str:
    """The sync run's tables, for the benchmarks page."""
    results = data["results"]
    lines = [
        "| scenario | " + " | ".join(CLIENTS) + " |",
        "|---" * (len(CLIENTS) + 1) + "|",
    ]
    for metric, row in results.items():
        cells = " | ".join(_cell(metric, row.get(name), name) for name in CLIENTS)
        lines.append(f"| {METRICS.get(metric, metric)} | {cells} |")
    lines += [
        "",
        f"**Targets** ({OURS_SYNC}; floor: {OURS_ASYNC}, measured in the same rounds, against "
        "the same reference)",
        "",
        "| target | measured | limit | | floor |",
        "|---|---|---|---|---|",
    ]
    missed: list[str] = []
    for row in data["targets"]:
        value, limit, floor = _measured(row)
        verdict = "met" if row["met"] else "**missed**"
        lines.append(f"| {row['target']} | {value} | {limit} | {verdict} | {floor} |")
        if not row["met"] and row["floor"] is not None:
            reference = REFERENCES[row["reference"]]
            bound = (
                "the limit lies below what that path reaches by itself"
                if row["floor"] > row["limit"]
                else "that path meets the limit, the hand-over between the loop's thread and "
                "the caller's is what misses it"
            )
            missed.append(
                f"- {row['target']}: {value}, limit {limit}. Our async path measured {floor} "
                f"against {reference} in the same rounds; the sync path runs the app on that "
                f"path and adds a hand-over between threads to it: {bound}."
            )
    if missed:
        lines += ["", "Missed targets, and the floor under them:", "", *missed]
    threads = data["threads"]
    lines += [
        "",
        f"Threads alive at the end beyond those at the start: {threads['beyond_start']}, of "
        f"which {threads['ours']} the library's loop thread (uvicorn's and TestClient's "
        "portal belong to the anchors).",
    ]
    for note in failure_notes(data):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def settings(quick: bool, rounds: int = 0) -> dict[str, int]:
    return {
        "rounds": rounds or (3 if quick else 12),
        "batch": 50 if quick else 200,
        "threads": 50,
        "per_thread": 20,
    }


def collect(config: dict[str, int]) -> dict[str, Any]:
    return analyse(*run(**config))


def main(argv: Sequence[str] | None = None) -> int:
    import run as runner

    return runner.main(["--sync", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
