"""The asyncio internals that `aibridge_transport._cpython` relies on exist on this Python.

Plain tests on a loop of their own (`asyncio.run`): these are asyncio's internals, which trio
has no counterpart of.
"""

from __future__ import annotations

import asyncio
import asyncio.tasks
import sys
from collections import deque

import pytest

from aibridge_transport import _cpython


def test_the_running_loop_is_found_without_an_exception() -> None:
    assert _cpython.running_loop() is None

    async def main() -> None:
        assert _cpython.running_loop() is asyncio.get_running_loop()

    asyncio.run(main())


def test_a_task_tells_whether_it_waits_on_a_future() -> None:
    async def main() -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.get_running_loop().create_task(asyncio.wait_for(future, None))
        assert hasattr(task, "_fut_waiter")
        assert not _cpython.waits_on_a_future(task)  # not started yet: due to run
        await asyncio.sleep(0)
        assert _cpython.waits_on_a_future(task)
        future.set_result(None)
        assert not _cpython.waits_on_a_future(task)  # woken: due to run again
        await task

    asyncio.run(main())


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12+ start tasks with eager_start")
def test_the_first_step_of_a_new_task_is_the_last_of_the_ready_queue() -> None:
    assert callable(asyncio.tasks._enter_task)
    assert callable(asyncio.tasks._leave_task)
    steps: list[str] = []

    async def step() -> None:
        steps.append("ran")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        caller = asyncio.current_task()
        assert caller is not None
        task = loop.create_task(step())
        ready = getattr(loop, "_ready", None)
        assert type(ready) is deque
        assert ready[-1]._callback.__self__ is task
        assert callable(ready[-1]._run)
        _cpython.run_first_step(loop, caller, task)
        assert steps == ["ran"]  # ran now, not at the loop's next turn
        assert task.done()
        assert asyncio.current_task() is caller

    asyncio.run(main())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="3.11 has no eager_start")
def test_eager_start_is_public_from_3_12_on() -> None:
    steps: list[str] = []

    async def step() -> None:
        steps.append("ran")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.Task(step(), loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
        assert steps == ["ran"]
        await task

    asyncio.run(main())
    assert not hasattr(_cpython, "run_first_step")
