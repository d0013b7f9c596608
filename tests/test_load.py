"""Thousands of streams open at once on one event loop, each read slowly.

`python scripts/load.py` runs 10,000 of them.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest
from fuzz_workload import run_load

pytestmark = pytest.mark.anyio

STREAMS = 2000
CHUNKS = 12
CHUNK_BYTES = 8192
BUFFERED_CHUNKS = 2
# Measured: about 19 KiB a stream for the request, response, scope, task and streams.
OVERHEAD_PER_STREAM = 32 * 1024


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


@pytest.mark.usefixtures("traced")
async def test_thousands_of_slow_streams_stay_within_the_buffer() -> None:
    report = await run_load(
        STREAMS, chunks=CHUNKS, chunk_bytes=CHUNK_BYTES, max_buffered_chunks=BUFFERED_CHUNKS
    )
    assert report.completed == STREAMS  # every body arrived byte for byte
    # Behaviour §5: a slow reader holds at most the buffer, plus the chunk it reads and the
    # one the app is sending, never the body.
    in_flight = (BUFFERED_CHUNKS + 2) * CHUNK_BYTES
    assert report.peak_per_stream < in_flight + OVERHEAD_PER_STREAM
    assert report.peak_per_stream < report.body_bytes * 2 / 3
    assert report.live_left == 0
    assert report.tasks_left == 0  # behaviour §6
