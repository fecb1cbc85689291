"""Tasks: finding the current one without a system call per lookup, and ending a group of them.

On Python 3.11 `asyncio.get_running_loop()` (which `asyncio.current_task()` calls when given no
loop) checks for a fork with `getpid()`, a real system call, every time. `CurrentTask`
remembers the loop and asks for it again only when it finds no task there: the first time, or
when another loop runs now (as in tests, one loop per test).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


class CurrentTask:
    __slots__ = ("loop",)

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> asyncio.Task[Any]:
        loop = self.loop
        task = asyncio.current_task(loop) if loop is not None else None
        if task is None:
            loop = self.loop = asyncio.get_running_loop()
            task = asyncio.current_task(loop)
            if task is None:
                raise RuntimeError("CurrentTask called outside a task")
        return task


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait until each has ended. Their own CancelledErrors are expected and
    absorbed; a cancellation of the caller itself is not (it is raised once all have ended)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled():
            task.exception()  # retrieved: a loop that failed was already logged by itself
