"""Soak: tens of thousands of mixed exchanges; memory and tasks must stay flat.

    python scripts/soak.py [--exchanges 50000] [--every 5000] [--backend asyncio|trio|both]

Prints, at each checkpoint, the memory traced by tracemalloc, the tasks left on the loop and
the exchanges still live, after the apps in their grace period have ended.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tracemalloc
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzz_workload import Checkpoint, run_soak


def show(checkpoint: Checkpoint) -> None:
    print(
        f"{checkpoint.exchanges:>8} exchanges  {checkpoint.traced_bytes / 1024:>9.1f} KiB traced"
        f"  {checkpoint.tasks:>3} tasks  {checkpoint.live_exchanges:>3} live"
        f"  {checkpoint.seconds:>7.1f} s",
        flush=True,
    )


async def soak(total: int, every: int) -> None:
    checkpoints, tally, tasks_left = await run_soak(total, every=every, report=show)
    first, last = checkpoints[0], checkpoints[-1]
    growth = last.traced_bytes - first.traced_bytes
    print(f"growth from {first.exchanges} to {last.exchanges}: {growth / 1024:+.1f} KiB")
    print(f"tasks left after closing: {tasks_left}")
    for outcome, count in sorted(tally.outcomes.items()):
        print(f"  {count:>8}  {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=50_000)
    parser.add_argument("--every", type=int, default=5_000)
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    args = parser.parse_args()
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    # The crashing apps are logged on every exchange: records are made, not printed.
    library_logger = logging.getLogger("aibridge_transport")
    library_logger.addHandler(logging.NullHandler())
    library_logger.propagate = False
    tracemalloc.start()
    for backend in backends:
        print(f"== {backend}")
        anyio.run(soak, args.exchanges, args.every, backend=backend)


if __name__ == "__main__":
    main()
