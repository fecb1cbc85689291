"""Finding the current task without a system call per lookup.

On Python 3.11 `asyncio.get_running_loop()` (which `asyncio.current_task()` calls when given no
loop) checks for a fork with `getpid()`, a real system call, every time. `CurrentTask`
remembers the loop and asks for it again only when it finds no task there: the first time, or
when another loop runs now (as in tests, one loop per test).
"""

from __future__ import annotations

import asyncio
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
