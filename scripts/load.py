"""Load: 10,000 streams open at once on one event loop, each read slowly, in lock step.

    python scripts/load.py [--streams 10000] [--chunks 32] [--chunk-bytes 4096] [--buffer 8]

Every stream's app sends `--chunks` chunks of `--chunk-bytes`; every reader takes one chunk
per round and waits for all the others, so all streams stay open until the last round. Peak memory
(tracemalloc) is reported per stream, against the buffer (`--buffer` chunks) and the body.
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzz_workload import run_load


async def load(streams: int, chunks: int, chunk_bytes: int, buffer: int) -> None:
    report = await run_load(
        streams, chunks=chunks, chunk_bytes=chunk_bytes, max_buffered_chunks=buffer
    )
    print(f"streams open at once      {report.streams}")
    print(f"body per stream           {report.body_bytes / 1024:.0f} KiB")
    print(f"bodies in all             {report.body_bytes * report.streams / 2**20:.0f} MiB")
    print(f"buffer per stream         {report.buffer_bytes / 1024:.0f} KiB ({buffer} chunks)")
    print(f"peak traced per stream    {report.peak_per_stream / 1024:.1f} KiB")
    print(
        f"peak traced in all        {(report.peak_bytes - report.baseline_bytes) / 2**20:.1f} MiB"
    )
    print(f"completed byte for byte   {report.completed}")
    print(f"tasks left after closing  {report.tasks_left}")
    print(f"exchanges left live       {report.live_left}")
    print(f"time                      {report.seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--chunk-bytes", type=int, default=4096)
    parser.add_argument("--buffer", type=int, default=8)
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    args = parser.parse_args()
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    tracemalloc.start()
    for backend in backends:
        print(f"== {backend}")
        anyio.run(load, args.streams, args.chunks, args.chunk_bytes, args.buffer, backend=backend)


if __name__ == "__main__":
    main()
