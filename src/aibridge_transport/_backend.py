"""The one place that knows which event loop runs: spawning an app task nobody has to enter.

An exchange's app task must outlive the caller's task (the response is often read and closed
from another task) and must not need a task group that the caller enters: SDKs never enter
their `http_client`. So the task is spawned at loop level, a native asyncio task or a trio
system task, and the library itself cancels and awaits it (`aclose`, grace periods). Both are
cheaper than an anyio task group as well.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["spawn_detached"]


def _running_trio() -> bool:
    trio = sys.modules.get("trio")
    return trio is not None and bool(trio.lowlevel.in_trio_run())


def spawn_detached(
    task: Callable[[], Coroutine[Any, Any, None]], context: contextvars.Context
) -> object:
    """Start `task()` in `context` on the running loop; return a handle to keep it alive.

    `task` must catch every exception but cancellation itself.
    """
    if _running_trio():
        import trio

        return trio.lowlevel.spawn_system_task(task, context=context)
    return asyncio.get_running_loop().create_task(task(), context=context)
