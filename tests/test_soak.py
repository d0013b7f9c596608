"""A CI-sized soak: memory and tasks stay flat over thousands of mixed exchanges.

`python scripts/soak.py` runs the same workload for tens of thousands of exchanges.
"""

from __future__ import annotations

import logging
import tracemalloc
from collections import Counter
from collections.abc import Iterator

import pytest
from fuzz_workload import KINDS, Ending, run_soak

pytestmark = pytest.mark.anyio

EXCHANGES = 2000
EVERY = 500
# A leak of one small object per exchange would pass this; one response, scope or exchange
# per exchange (a few KiB each) would not. Measured: under 130 KiB on either backend.
MAX_GROWTH = 512 * 1024


@pytest.fixture
def traced() -> Iterator[None]:
    # The crashing apps are logged on every exchange, and pytest's log capture keeps every
    # record, which would read as a leak here: the library's logger is off for the soak.
    library_logger = logging.getLogger("aibridge_transport")
    library_logger.disabled = True
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
        library_logger.disabled = False


@pytest.mark.usefixtures("traced")
async def test_memory_and_tasks_stay_flat_over_mixed_exchanges() -> None:
    checkpoints, tally, tasks_left = await run_soak(EXCHANGES, every=EVERY)
    assert [checkpoint.exchanges for checkpoint in checkpoints] == [500, 1000, 1500, 2000]
    first, last = checkpoints[0], checkpoints[-1]
    assert last.traced_bytes - first.traced_bytes < MAX_GROWTH
    assert all(checkpoint.tasks == 0 for checkpoint in checkpoints)
    assert all(checkpoint.live_exchanges == 0 for checkpoint in checkpoints)
    assert tasks_left == 0
    # Every kind of exchange ran, and ended the way the behaviour reference says.
    assert tally.outcomes == expected_outcomes(EXCHANGES)


def expected_outcomes(total: int) -> dict[str, int]:
    # Exchange i ends as KINDS[(i // 3) % len(KINDS)], on transport i % 3: raise mode, 500
    # mode, factory.
    names = {
        Ending.STREAMED: "streamed",
        Ending.CLOSED_EARLY: "closed early",
        Ending.READ_TIMEOUT: "read timeout",  # behaviour §6
        Ending.CANCELLED: "cancelled",
        Ending.ABANDONED: "abandoned",
        Ending.FINAL_THEN_WORK: "app ran on after the body",
        Ending.UPLOAD_FAILS: "upload error raised",  # behaviour §7: the caller's own
    }
    outcomes: Counter[str] = Counter()
    for index in range(total):
        ending = KINDS[(index // 3) % len(KINDS)]
        if ending in (Ending.CRASH_BEFORE_START, Ending.CRASH_BASE_BEFORE_START):
            # Raised in raise mode, else a 500 (behaviour §7).
            outcomes["app error raised" if index % 3 == 0 else "crash before start: 500"] += 1
        elif ending is Ending.CRASH_MID_STREAM:
            # Raised in raise mode, else a protocol error (behaviour §7).
            outcomes["app error raised" if index % 3 == 0 else "remote protocol error"] += 1
        else:
            outcomes[names[ending]] += 1
    return dict(outcomes)
