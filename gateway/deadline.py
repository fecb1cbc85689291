"""One upstream attempt's deadlines on a single loop timer: first byte, idle between chunks, total.

`asyncio.timeout` costs a timer handle for every (re)schedule, and an attempt's idle deadline moves
with every chunk. `Deadline` instead keeps one timer armed no later than the earliest moment the
deadline could pass; when it fires it re-arms from the last progress mark if the deadline has
moved (a lazy timer), so marking progress is one float store. When the deadline truly passes the
task is cancelled, and the `with deadline:` block it was in raises `TimeoutError` instead, exactly
as `asyncio.timeout` converts its own cancellation (any other cancellation passes through).

Phases: until `idle()` is called the deadline is `ttft_s` from the start (time to first byte);
after it, `idle_s` past the last `progress()`. Both are capped by `total_s` from the start.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

SLACK_S = 0.001  # a timer may fire this much early (loop clock resolution) and still count


class Deadline:
    __slots__ = (
        "_cancelling",
        "_end_at",
        "_first_at",
        "_handle",
        "_idle_s",
        "_loop",
        "_mark",
        "_raised",
        "_task",
        "_ttft_s",
        "expired",
        "idling",
    )

    def __init__(self, ttft_s: float, idle_s: float, total_s: float) -> None:
        """Armed at once. The first timer is set no later than `idle_s` ahead, so switching to
        the idle phase never has to move it (a slow first byte costs one extra wake-up)."""
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None, "a deadline belongs to a task"
        self._task = task
        self._cancelling = task.cancelling()
        now = self._loop.time()
        self._ttft_s, self._idle_s = ttft_s, idle_s
        self._first_at, self._end_at = now + ttft_s, now + total_s
        self._mark = now
        self._raised = self.expired = self.idling = False
        first = now + min(ttft_s, idle_s, total_s)
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(first, self._fire)

    def idle(self) -> None:
        """The first byte arrived: from now on the deadline is `idle_s` after the last progress."""
        self.idling = True
        self._mark = self._loop.time()

    def progress(self) -> None:
        self._mark = self._loop.time()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def reason(self) -> str:
        """Why it expired, for the error message."""
        if self._due() == self._end_at:
            return "upstream attempt reached its total timeout"
        if self.idling:
            return f"upstream answer stalled for {self._idle_s:g}s"
        return f"upstream gave no answer within {self._ttft_s:g}s"

    def __enter__(self) -> Deadline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is asyncio.CancelledError and self.expired and not self._raised:
            self._raised = True
            if self._task.uncancel() <= self._cancelling:
                raise TimeoutError from None

    def _due(self) -> float:
        if self.idling:
            return min(self._mark + self._idle_s, self._end_at)
        return min(self._first_at, self._end_at)

    def _fire(self) -> None:
        self._handle = None
        due = self._due()
        if due - self._loop.time() > SLACK_S:
            self._handle = self._loop.call_at(due, self._fire)
            return
        self.expired = True
        self._task.cancel()
