"""Background loops end when cancelled, even when redis-py swallows the cancellation.

Regression: redis-py can absorb a CancelledError delivered while it takes or returns a pooled
connection; the control loop then caught the next store error (or nothing) and went round
again, so about one SIGTERM in three after an admin call never exited."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gateway.errors import StoreUnavailable
from gateway.infra.redis_client import bounded
from gateway.infra.tasks import cancel_all


async def swallowing_call(fail: bool) -> str:
    """What redis-py does at worst: a cancellation arrives and is absorbed."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(10)
    if fail:
        raise OSError("connection reset")
    return "value"


@pytest.mark.parametrize("fail", [False, True])
async def test_bounded_raises_a_swallowed_cancellation(fail: bool) -> None:
    task = asyncio.get_running_loop().create_task(bounded(swallowing_call(fail), 30))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_loop_over_bounded_calls_stops_when_cancelled() -> None:
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            with contextlib.suppress(StoreUnavailable):
                await bounded(swallowing_call(True), 30)

    task = asyncio.get_running_loop().create_task(loop())
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done == {task} and task.cancelled() and rounds == 1


async def test_bounded_keeps_results_and_maps_errors_when_not_cancelled() -> None:
    async def ok() -> int:
        return 7

    async def broken() -> int:
        raise OSError("refused")

    assert await bounded(ok(), 1) == 7
    with pytest.raises(StoreUnavailable):
        await bounded(broken(), 1)


async def test_cancel_all_ends_every_task_and_keeps_the_callers_cancellation() -> None:
    async def stubborn() -> None:
        while True:
            await asyncio.sleep(1)

    tasks = [asyncio.get_running_loop().create_task(stubborn()) for _ in range(3)]
    await cancel_all(tasks)
    assert all(t.cancelled() for t in tasks)

    async def waiter(inner: list[asyncio.Task[None]]) -> None:
        await cancel_all(inner)

    slow_inner = asyncio.get_running_loop().create_task(swallow_forever())
    outer = asyncio.get_running_loop().create_task(waiter([slow_inner]))
    while not slow_inner.cancelling():  # until `outer` waits in cancel_all
        await asyncio.sleep(0)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    slow_inner.cancel()
    await asyncio.wait([slow_inner], timeout=1)


async def swallow_forever() -> None:
    """A task that ignores its first cancellation (so `cancel_all` would wait on it)."""
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        await asyncio.sleep(10)
