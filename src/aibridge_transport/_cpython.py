"""Every use of asyncio's private internals, in one place.

`_backend` needs three things that asyncio has no public API for:

- the running loop, or `None` when there is none (`asyncio._get_running_loop`, which loop
  implementations use): `get_running_loop()` raises instead, which every request on trio
  would pay for;
- whether a task waits on a future, so that a task due to run gets that turn before it is
  cancelled (`Task._fut_waiter`, set by `Task.__step` and cleared when the task is woken);
- on Python 3.11 only, starting a task eagerly as 3.12's `eager_start=True` does: take the
  task's first step, which `create_task` has just queued, off the loop's ready queue
  (`BaseEventLoop._ready`, a deque of `Handle`s whose `_callback` is the task's bound step)
  and run it now with the task made current (`asyncio.tasks._enter_task`/`_leave_task`), as
  the loop's turn would.

`tests/test_cpython_internals.py` checks on each supported Python that these still exist.
Delete the 3.11 part (and `run_first_step`) when Python 3.11 support is dropped: 3.12+ start
tasks eagerly through the public `eager_start`.
"""

from __future__ import annotations

import asyncio
import asyncio.tasks
import sys
from collections import deque
from typing import Any

__all__ = ["run_first_step", "running_loop", "waits_on_a_future"]


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or `None` (no loop, or another library's, such as trio's)."""
    return asyncio._get_running_loop()


def waits_on_a_future(task: asyncio.Task[Any]) -> bool:
    """Whether `task` is suspended on a future that has not completed (not merely due to run)."""
    waiter = getattr(task, "_fut_waiter", None)
    return waiter is not None and not waiter.done()


if sys.version_info < (3, 12):

    def run_first_step(
        loop: asyncio.AbstractEventLoop, caller: asyncio.Task[Any], task: asyncio.Task[Any]
    ) -> None:
        """Run the first step of `task`, just created by `create_task`, now (see above)."""
        # Only when that is certain (a standard loop, the queue's last handle being this
        # task's step) and a task runs now (the caller): the caller stops being the current
        # task, the new task becomes it, and the step runs in the task's context.
        ready = getattr(loop, "_ready", None)
        if type(ready) is not deque or not ready:
            return
        handle = ready[-1]
        if getattr(getattr(handle, "_callback", None), "__self__", None) is not task:
            return
        ready.pop()
        asyncio.tasks._leave_task(loop, caller)
        try:
            handle._run()
        finally:
            asyncio.tasks._enter_task(loop, caller)
