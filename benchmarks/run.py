"""Every client side by side against one Starlette app, interleaved round by round.

    python benchmarks/run.py                 # default settings, a few minutes
    python benchmarks/run.py --quick         # a smoke run
    python benchmarks/run.py --json out.json # where the JSON goes (default benchmarks/results/)
    python benchmarks/run.py --compare old.json new.json
    python benchmarks/run.py --sync          # the sync clients instead (see bench_sync.py)
    python benchmarks/run.py --compare old-sync.json new-sync.json

Each round runs every client once per scenario, in orders that form a Williams design (see
`balanced_orders`), so a noisy neighbour on a shared machine, and what one client leaves behind
for the next, slow every client alike. Ratios are medians of the per-round ratios (client /
reference within the same round).

On glibc the allocator is pinned for the run (`--default-malloc` leaves it alone): by default
glibc hands freed blocks above 128 KiB back to the kernel and faults them in again on the next
allocation, and moves that threshold as it goes, so whether a 1 MiB or 8 MiB body costs a few
hundred microseconds of page faults depends on what the previous round freed. The 1 MiB echo
then measures 250 or 650 us for the same client from one round to the next. Pinned, every
client's large bodies come from memory already mapped, as in a long-running service.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
from bench_app import app
from bench_clients import (
    ASGI_TRANSPORT,
    CLIENT_NAMES,
    DIRECT,
    DIRECT_TASK,
    FACTORY,
    HTTPX_TASK,
    STREAMING,
    UVICORN,
    Client,
    UvicornThread,
    open_clients,
)
from bench_scenarios import SCENARIOS, Scenario, Settings

from aibridge_transport import with_delegated_api_key_id
from aibridge_transport._transport import DEFAULT_MAX_BUFFERED_CHUNKS

MiB = 1024 * 1024
HERE = Path(__file__).resolve().parent
BACKENDS = ("asyncio", "trio")
OURS = (STREAMING, FACTORY)

# Samples: backend -> scenario -> client -> metric -> values (one per round).
Samples = dict[str, dict[str, dict[str, dict[str, list[float]]]]]


def settings_for(args: argparse.Namespace) -> Settings:
    if args.quick:
        return Settings(
            rounds=args.rounds or 5,
            small_batch=10,
            echo_batch=2,
            concurrency=1000,
            concurrent_rounds=2,
            slow_delay=0.0005,
            slow_sizes=(2 * MiB, 8 * MiB),
        )
    rounds = args.rounds or 21
    return Settings(
        rounds=rounds,
        small_batch=20,
        echo_batch=10,
        concurrency=1000,
        concurrent_rounds=max(3, rounds // 3),
        slow_delay=0.001,
        slow_sizes=(8 * MiB, 32 * MiB),
        whole_cycles=not args.rounds,
    )


def balanced_orders(clients: Sequence[Client], rounds: int) -> list[list[Client]]:
    """The order of the clients in each of `rounds` rounds: a Williams design.

    What one client leaves behind (cold caches, freed memory, work for uvicorn's thread) lands
    on the client that runs next, and the time to a first byte feels it most. Over one cycle
    of the design (n rounds for n clients, 2n when n is odd) every client takes every position
    equally often and follows every other client equally often, so that carry-over falls on
    all of them alike. (A shuffled order with a fixed seed repeated the same neighbours in
    every run: one client came out 15 % slower on first bytes, run after run.)
    """
    n = len(clients)
    first = [0]
    low, high = 1, n - 1
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    cycle = [[(i + shift) % n for i in first] for shift in range(n)]
    if n % 2:
        cycle += [row[::-1] for row in cycle]
    return [[clients[i] for i in cycle[r % len(cycle)]] for r in range(rounds)]


def whole_cycles(rounds: int, count: int) -> int:
    """`rounds`, rounded up to whole cycles of the design for `count` clients."""
    cycle = count if count % 2 == 0 else 2 * count
    return -(-rounds // cycle) * cycle


async def settle() -> None:
    # Outside the timed region: lets uvicorn's thread finish what a request left behind.
    await anyio.sleep(0.001)


async def run_backend(
    backend: str,
    settings: Settings,
    scenarios: Sequence[Scenario],
    wanted: set[str] | None,
    uvicorn_port: int | None,
    samples: Samples,
    notes: dict[str, Any],
) -> None:
    async with AsyncExitStack() as stack:
        clients = [
            c
            for c in await open_clients(stack, app, uvicorn_port)
            if wanted is None or c.name in wanted
        ]
        usable: list[Client] = []
        for client in clients:
            try:
                await client.request("GET", "/small", b"")
                usable.append(client)
            except Exception as exc:
                notes.setdefault("unsupported", {})[client.name] = f"{type(exc).__name__}: {exc}"
                print(f"  {client.name} cannot run on {backend}: {exc!r}", flush=True)
        by_scenario = samples.setdefault(backend, {})
        for scenario in scenarios:
            print(f"  {backend}: {scenario.title} [{scenario.key}]", flush=True)
            results = by_scenario.setdefault(scenario.key, {})
            if scenario.mode == "once":
                for client in usable:
                    metrics = await scenario.measure(client, settings)
                    for metric, value in metrics.items():
                        results.setdefault(client.name, {}).setdefault(metric, []).append(value)
                continue
            for client in usable:  # warm-up, not recorded
                await scenario.measure(client, settings)
            rounds = (
                settings.concurrent_rounds
                if scenario.key.startswith("concurrent")
                else settings.rounds
            )
            if settings.whole_cycles:
                rounds = whole_cycles(rounds, len(usable))
            for order in balanced_orders(usable, rounds):
                for client in order:
                    # Each measurement starts from a collected heap: a full collection that the
                    # previous client's garbage set off would otherwise land on this one (the
                    # 1000-request rounds of one client then spread from 0.6x to 2.3x).
                    gc.collect()
                    await settle()
                    metrics = await scenario.measure(client, settings)
                    for metric, value in metrics.items():
                        results.setdefault(client.name, {}).setdefault(metric, []).append(value)


# -- statistics and output -----------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    if len(values) >= 2:
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = median = q3 = values[0]
    return {"median": median, "q1": q1, "q3": q3, "n": float(len(values))}


def paired_ratio(values: list[float], reference: list[float]) -> float | None:
    ratios = [v / r for v, r in zip(values, reference, strict=False) if r > 0]
    return statistics.median(ratios) if ratios else None


def is_bytes(metric: str) -> bool:
    return "heap" in metric


def is_count(metric: str) -> bool:
    return metric == "chunks_ahead"


def fmt(metric: str, value: float) -> str:
    if is_bytes(metric):
        return f"{value / MiB:.2f} MiB"
    if is_count(metric):
        return f"{value:.0f}"
    if value < 1e-3:
        return f"{value * 1e6:.0f} us"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def analyse(samples: Samples) -> dict[str, Any]:
    """Summaries and ratios: backend -> scenario -> metric -> client -> numbers."""
    out: dict[str, Any] = {}
    for backend, scenarios in samples.items():
        for scenario, clients in scenarios.items():
            metrics = sorted({m for per in clients.values() for m in per})
            for metric in metrics:
                row: dict[str, Any] = {}
                ref = clients.get(ASGI_TRANSPORT, {}).get(metric)
                direct = clients.get(DIRECT, {}).get(metric)
                floor = clients.get(DIRECT_TASK, {}).get(metric)
                httpx_floor = clients.get(HTTPX_TASK, {}).get(metric)
                for name in CLIENT_NAMES:
                    per = clients.get(name, {})
                    if metric not in per:
                        continue
                    values = per[metric]
                    entry: dict[str, Any] = summary(values)
                    entry["samples"] = values
                    if ref:
                        entry["vs_asgi"] = paired_ratio(values, ref)
                    if direct:
                        entry["vs_direct"] = paired_ratio(values, direct)
                    if floor:
                        entry["vs_floor"] = paired_ratio(values, floor)
                    if httpx_floor:
                        entry["vs_httpx_floor"] = paired_ratio(values, httpx_floor)
                    row[name] = entry
                out.setdefault(backend, {}).setdefault(scenario, {})[metric] = row
    return out


# What the library promises (asyncio, ratios from one run): scenario, metric, reference, limit.
TARGETS: list[tuple[str, str, str, str | None, float]] = [
    ("small JSON latency", "small_json", "latency", "vs_asgi", 1.15),
    ("1 MiB echo latency", "echo_1mib", "latency", "vs_asgi", 1.15),
    ("1 MiB echo peak heap (no extra copy)", "echo_1mib_heap", "peak_heap", "vs_asgi", 1.05),
    ("8 MiB stream first byte", "stream_8mib", "first", "vs_asgi", 0.20),
    ("8 MiB stream total", "stream_8mib", "total", "vs_asgi", 0.50),
    ("SSE first event", "sse_500", "first", "vs_direct", 3.0),
    ("SSE total", "sse_500", "total", "vs_direct", 1.5),
    # Context, not targets: the same against the floors of any streaming transport.
    ("SSE first event vs direct+task", "sse_500", "first", "vs_floor", math.inf),
    ("SSE total vs direct+task", "sse_500", "total", "vs_floor", math.inf),
    ("small JSON vs httpx+task", "small_json", "latency", "vs_httpx_floor", math.inf),
    ("8 MiB first byte vs httpx+task", "stream_8mib", "first", "vs_httpx_floor", math.inf),
    ("8 MiB total vs httpx+task", "stream_8mib", "total", "vs_httpx_floor", math.inf),
    ("SSE first event vs httpx+task", "sse_500", "first", "vs_httpx_floor", math.inf),
    ("SSE total vs httpx+task", "sse_500", "total", "vs_httpx_floor", math.inf),
    ("1000 concurrent wall time", "concurrent_1000", "wall", "vs_asgi", 1.2),
    ("1000 concurrent peak heap", "concurrent_1000_heap", "peak_heap", None, 12 * MiB),
    (
        "slow consumer: chunks ahead",
        "slow_consumer",
        "chunks_ahead",
        None,
        DEFAULT_MAX_BUFFERED_CHUNKS + 1,
    ),
]


def check_targets(analysis: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    by_scenario = analysis.get("asyncio", {})
    for label, scenario, metric, kind, limit in TARGETS:
        # httpx+task is held to the targets too (not to the context rows): where even that
        # floor misses one, no streaming transport under httpx.AsyncClient can meet it.
        bounded = kind not in ("vs_floor", "vs_httpx_floor") and kind is not None
        for client in (*OURS, HTTPX_TASK) if bounded else OURS:
            entry = by_scenario.get(scenario, {}).get(metric, {}).get(client)
            if entry is None:
                continue
            value = entry.get(kind) if kind else entry["median"]
            if value is None:
                continue
            rows.append(
                {
                    "target": label,
                    "client": client,
                    "value": value,
                    "limit": limit,
                    "kind": kind or metric,
                    "met": value <= limit,
                }
            )
    # Memory independent of body size: 4x the body may not cost more than 1 MiB extra.
    slow = by_scenario.get("slow_consumer", {})
    for client in OURS:
        small = slow.get("peak_heap", {}).get(client)
        large = slow.get("peak_heap_4x", {}).get(client)
        if small and large:
            growth = max(0.0, large["median"] - small["median"])
            rows.append(
                {
                    "target": "slow consumer: heap growth 4x body",
                    "client": client,
                    "value": growth,
                    "limit": float(MiB),
                    "kind": "peak_heap",
                    "met": growth <= MiB,
                }
            )
    return rows


def fmt_target(row: dict[str, Any]) -> tuple[str, str]:
    kind = row["kind"]
    refs = {
        "vs_asgi": ASGI_TRANSPORT,
        "vs_direct": DIRECT,
        "vs_floor": DIRECT_TASK,
        "vs_httpx_floor": HTTPX_TASK,
    }
    if kind in refs:
        ref = refs[kind]
        limit = "(context)" if math.isinf(row["limit"]) else f"<= {row['limit']:.2f}x"
        return f"{row['value']:.2f}x {ref}", limit
    return fmt(kind, row["value"]), f"<= {fmt(kind, row['limit'])}"


SCENARIO_TITLES = {s.key: s.title for s in SCENARIOS}
METRIC_TITLES = {
    "latency": "latency",
    "first": "first byte / event",
    "total": "total",
    "wall": "wall time",
    "peak_heap": "peak heap",
    "peak_heap_4x": "peak heap, 4x the body",
    "chunks_ahead": "chunks ahead (max)",
}


def console_report(analysis: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for backend, scenarios in analysis.items():
        lines.append(f"\n== {backend} ==")
        header = f"{'scenario / metric':<52}{'client':<24}{'median':>12}{'IQR':>22}"
        lines.append(header + f"{'vs ASGI':>10}{'vs direct':>11}{'vs d+task':>11}")
        for scenario, metrics in scenarios.items():
            for metric, row in metrics.items():
                title = f"{SCENARIO_TITLES.get(scenario, scenario)}: {METRIC_TITLES[metric]}"
                for client, e in row.items():
                    iqr = f"{fmt(metric, e['q1'])} - {fmt(metric, e['q3'])}"
                    vs_asgi = e.get("vs_asgi")
                    vs_direct = e.get("vs_direct")
                    vs_floor = e.get("vs_floor")
                    lines.append(
                        f"{title[:51]:<52}{client:<24}{fmt(metric, e['median']):>12}{iqr:>22}"
                        + (f"{vs_asgi:>9.2f}x" if vs_asgi is not None else f"{'':>10}")
                        + (f"{vs_direct:>10.2f}x" if vs_direct is not None else f"{'':>11}")
                        + (f"{vs_floor:>10.2f}x" if vs_floor is not None else "")
                    )
                    title = ""
    lines.append("\n== targets (asyncio) ==")
    for row in targets:
        value, limit = fmt_target(row)
        status = "" if math.isinf(row["limit"]) else "met" if row["met"] else "MISSED"
        lines.append(f"{row['target']:<36}{row['client']:<24}{value:>30}{limit:>12}  {status}")
    return "\n".join(lines)


def markdown_report(analysis: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for backend, scenarios in analysis.items():
        present = [
            n
            for n in CLIENT_NAMES
            if any(n in row for m in scenarios.values() for row in m.values())
        ]
        lines.append(f"\n**{backend}** (median; in brackets: ratio to httpx.ASGITransport)\n")
        lines.append("| scenario | " + " | ".join(present) + " |")
        lines.append("|---" * (len(present) + 1) + "|")
        for scenario, metrics in scenarios.items():
            for metric, row in metrics.items():
                cells = []
                for name in present:
                    e = row.get(name)
                    if e is None:
                        cells.append("-")
                        continue
                    cell = fmt(metric, e["median"])
                    if e.get("vs_asgi") is not None and name != ASGI_TRANSPORT:
                        cell += f" ({e['vs_asgi']:.2f}x)"
                    cells.append(cell)
                title = f"{SCENARIO_TITLES.get(scenario, scenario)}: {METRIC_TITLES[metric]}"
                lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines.append("\n**Targets** (asyncio)\n")
    lines.append("| target | client | measured | limit | |")
    lines.append("|---|---|---|---|---|")
    for row in targets:
        value, limit = fmt_target(row)
        lines.append(
            f"| {row['target']} | {row['client']} | {value} | {limit} | "
            + ("" if math.isinf(row["limit"]) else "met" if row["met"] else "**missed**")
            + " |"
        )
    return "\n".join(lines) + "\n"


def medians(data: dict[str, Any]) -> dict[tuple[str, str], tuple[str, float]]:
    """Every median of a run, async or sync: (where, client) -> (metric, median)."""
    out: dict[tuple[str, str], tuple[str, float]] = {}
    results = data["results"]
    if data.get("kind") == "sync":  # metric -> client -> entry
        for metric, row in results.items():
            for client, entry in row.items():
                out[("sync/" + metric, client)] = (metric, entry["median"])
        return out
    for backend, scenarios in results.items():  # backend -> scenario -> metric -> client
        for scenario, metrics in scenarios.items():
            for metric, row in metrics.items():
                for client, entry in row.items():
                    where = f"{backend}/{scenario}/{metric}"
                    out[(where, client)] = (metric, entry["median"])
    return out


def compare(old_path: Path, new_path: Path) -> None:
    old = medians(json.loads(old_path.read_text()))
    new = medians(json.loads(new_path.read_text()))
    print(f"{'backend/scenario/metric':<54}{'client':<24}{'old':>12}{'new':>12}{'new/old':>9}")
    for (where, client), (metric, after) in new.items():
        if (where, client) not in old:
            continue
        before = old[(where, client)][1]
        ratio = after / before if before else 0.0
        print(
            f"{where:<54}{client:<24}{fmt(metric, before):>12}{fmt(metric, after):>12}"
            f"{ratio:>8.2f}x"
        )


# Whose versions a run records: the library and everything on the measured path.
MEASURED_PACKAGES = (
    "aibridge-transport",
    "httpx",
    "httpx2",
    "anyio",
    "trio",
    "starlette",
    "uvicorn",
)


def package_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in MEASURED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "versions": package_versions(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "commit": commit,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def pin_allocator() -> str:
    """Keep glibc from returning freed memory to the kernel (see the module's docstring)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if platform.system() != "Linux" or name is None:
        return "default allocator (not glibc)"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "default allocator (no mallopt)"
    m_trim_threshold, m_mmap_threshold = -1, -3
    # 32 MiB is glibc's largest mmap threshold on 64-bit: every body here stays below it.
    if mallopt(m_mmap_threshold, 32 * MiB) != 1 or mallopt(m_trim_threshold, 1 << 30) != 1:
        return "default allocator (mallopt refused)"
    return "glibc pinned: M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 1 GiB"


def run_meta(settings: dict[str, Any], allocator: str) -> dict[str, Any]:
    """What a run records beside its results, sync or async."""
    meta = machine()
    meta["settings"] = settings
    meta["max_buffered_chunks"] = DEFAULT_MAX_BUFFERED_CHUNKS
    meta["argv"] = list(sys.argv)
    meta["allocator"] = allocator
    return meta


def write_json(path: Path | None, prefix: str, meta: dict[str, Any], body: dict[str, Any]) -> None:
    path = path or HERE / "results" / f"{prefix}-{meta['date'].replace(':', '')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, **body}, indent=1) + "\n")
    print(f"\nJSON: {path}")


def run_sync(args: argparse.Namespace, allocator: str) -> int:
    import bench_sync

    config = bench_sync.settings(args.quick, args.rounds)
    data = bench_sync.collect(config)
    print(bench_sync.console_report(data))
    write_json(args.json, "bench-sync", run_meta(config, allocator), {"kind": "sync", **data})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few rounds, smaller bodies")
    parser.add_argument("--rounds", type=int, default=0, help="rounds per timed scenario")
    parser.add_argument("--json", type=Path, help="where to write the JSON results")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown")
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    parser.add_argument("--client", action="append", help="only these clients (repeatable)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"))
    parser.add_argument(
        "--default-malloc", action="store_true", help="leave glibc's allocator as it is"
    )
    parser.add_argument("--sync", action="store_true", help="the sync clients (bench_sync.py)")
    args = parser.parse_args(argv)
    if args.compare:
        compare(*args.compare)
        return 0
    allocator = "default allocator (--default-malloc)" if args.default_malloc else pin_allocator()
    print(f"allocator: {allocator}", flush=True)
    if args.sync:
        return run_sync(args, allocator)

    settings = settings_for(args)
    scenarios = [s for s in SCENARIOS if not args.scenario or s.key in args.scenario]
    wanted = set(args.client) | {ASGI_TRANSPORT, DIRECT} if args.client else None
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    samples: Samples = {}
    notes: dict[str, Any] = {}
    server = UvicornThread(app) if wanted is None or UVICORN in wanted else None
    if server is not None:
        server.start()
        notes["uvicorn"] = (
            f"uvicorn {server.http_implementation} in a thread of this process, "
            "httpx.AsyncClient over 127.0.0.1 (default pool: 100 connections)"
        )
    try:
        with with_delegated_api_key_id("bench"):
            for backend in backends:
                backend_notes = notes.setdefault(backend, {})
                anyio.run(
                    run_backend,
                    backend,
                    settings,
                    scenarios,
                    wanted,
                    server.port if server else None,
                    samples,
                    backend_notes,
                    backend=backend,
                )
    finally:
        if server is not None:
            server.stop()

    analysis = analyse(samples)
    targets = check_targets(analysis)
    print(console_report(analysis, targets))
    for backend in backends:
        unsupported = notes.get(backend, {}).get("unsupported")
        if unsupported:
            print(f"not run on {backend}: {unsupported}")
    if "uvicorn" in notes:
        print(notes["uvicorn"])

    meta = run_meta(settings.__dict__, allocator)
    write_json(args.json, "bench", meta, {"notes": notes, "results": analysis, "targets": targets})
    if args.markdown:
        args.markdown.write_text(markdown_report(analysis, targets))
        print(f"Markdown: {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
