"""Upstream attempts' deadlines (first byte, idle between chunks, total) on shared loop timers.

`asyncio.timeout` costs a loop timer per attempt and another per reschedule, and an attempt's
idle deadline moves with every chunk. Here deadlines share timers: a `DeadlineWheel` (one per
process) keeps one loop timer per `RESOLUTION_S` slot that has deadlines in it, so starting and
stopping an attempt's deadline is a set insert and removal. A slot's timer checks its deadlines
lazily: one whose deadline moved on (progress since) goes to its new slot; one that truly
passed cancels its task, and the `with deadline:` block the task was in raises `TimeoutError`
instead, exactly as `asyncio.timeout` converts its own cancellation (any other cancellation
passes through). Deadlines therefore fire up to `RESOLUTION_S` late, never early.

Phases: until `idle()` is called the deadline is `ttft_s` from the start (time to first byte);
after it, `idle_s` past the last `progress()`. Both are capped by `total_s` from the start.
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType

from gateway.infra.tasks import CurrentTask

RESOLUTION_S = 0.05


class DeadlineWheel:
    """Slots of deadlines, each slot with one loop timer; bound to the loop it first runs in."""

    def __init__(self) -> None:
        self._slots: dict[int, set[Deadline]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._current_task = CurrentTask()  # no `getpid` per attempt (see gateway.tasks)

    def start(self, ttft_s: float, idle_s: float, total_s: float) -> Deadline:
        """A deadline for the current task (the wheel rebinds when another loop runs now)."""
        task = self._current_task()
        loop = self._current_task.loop
        assert loop is not None
        if loop is not self._loop:
            self._loop, self._slots = loop, {}
        deadline = Deadline(self, loop, task, ttft_s, idle_s, total_s)
        self._add(deadline, deadline.first_check)
        return deadline

    def discard(self, deadline: Deadline) -> None:
        members = self._slots.get(deadline.slot)
        if members is not None:
            members.discard(deadline)

    def _add(self, deadline: Deadline, due: float) -> None:
        slot = math.ceil(due / RESOLUTION_S)
        deadline.slot = slot
        members = self._slots.get(slot)
        if members is None:
            members = self._slots[slot] = set()
            assert self._loop is not None
            self._loop.call_at(slot * RESOLUTION_S, self._fire, slot)
        members.add(deadline)

    def _fire(self, slot: int) -> None:
        members = self._slots.pop(slot, None)
        if not members:
            return
        assert self._loop is not None
        now = self._loop.time()
        for deadline in members:
            due = deadline.due()
            if due > now:
                self._add(deadline, due)  # progress moved it on
            else:
                deadline.expire()


class Deadline:
    __slots__ = (
        "_cancelling",
        "_end_at",
        "_first_at",
        "_idle_s",
        "_loop",
        "_mark",
        "_raised",
        "_task",
        "_ttft_s",
        "_wheel",
        "expired",
        "first_check",
        "idling",
        "slot",
    )

    def __init__(
        self,
        wheel: DeadlineWheel,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[object],
        ttft_s: float,
        idle_s: float,
        total_s: float,
    ) -> None:
        self._wheel, self._loop, self._task = wheel, loop, task
        self._cancelling = task.cancelling()
        now = loop.time()
        self._ttft_s, self._idle_s = ttft_s, idle_s
        self._first_at, self._end_at = now + ttft_s, now + total_s
        self._mark = now
        self._raised = self.expired = self.idling = False
        # no later than `idle_s` ahead, so switching to the idle phase never has to move it
        self.first_check = now + min(ttft_s, idle_s, total_s)
        self.slot = 0

    def idle(self) -> None:
        """The first byte arrived: from now on the deadline is `idle_s` after the last progress."""
        self.idling = True
        self._mark = self._loop.time()

    def progress(self) -> None:
        self._mark = self._loop.time()

    def stop(self) -> None:
        self._wheel.discard(self)

    def due(self) -> float:
        if self.idling:
            return min(self._mark + self._idle_s, self._end_at)
        return min(self._first_at, self._end_at)

    def expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def reason(self) -> str:
        """Why it expired, for the error message."""
        if self.due() == self._end_at:
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
