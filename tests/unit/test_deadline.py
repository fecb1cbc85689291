"""Attempt deadlines on the shared wheel: first-byte, idle and total phases, checked lazily;
only a deadline's own cancellation becomes TimeoutError; stop() takes it off the wheel."""

from __future__ import annotations

import asyncio

import pytest

from gateway.proxy.deadline import RESOLUTION_S, DeadlineWheel

TICK = RESOLUTION_S  # margins are several ticks wide, so lateness cannot flip an outcome


async def test_no_first_byte_in_time_raises_timeout_with_its_reason() -> None:
    loop = asyncio.get_running_loop()
    deadline = DeadlineWheel().start(3 * TICK, TICK, 60)  # checked at TICK, re-slotted, expires
    started = loop.time()
    with pytest.raises(TimeoutError), deadline:
        await asyncio.sleep(20 * TICK)
    deadline.stop()
    assert deadline.expired
    assert loop.time() - started >= 3 * TICK  # late by up to a slot, never early
    assert deadline.reason() == f"upstream gave no answer within {3 * TICK:g}s"


async def test_progress_keeps_an_idle_deadline_alive_until_a_stall() -> None:
    loop = asyncio.get_running_loop()
    deadline = DeadlineWheel().start(60, 5 * TICK, 60)
    deadline.idle()
    started = loop.time()
    with pytest.raises(TimeoutError), deadline:
        for _ in range(15):  # 15 ticks in all, three times the idle limit
            await asyncio.sleep(TICK)
            deadline.progress()
        alive = loop.time() - started
        await asyncio.sleep(60)
    deadline.stop()
    assert alive >= 15 * TICK
    assert deadline.reason() == f"upstream answer stalled for {5 * TICK:g}s"


async def test_total_caps_every_phase() -> None:
    deadline = DeadlineWheel().start(60, 60, 3 * TICK)
    deadline.idle()
    with pytest.raises(TimeoutError), deadline:
        while True:
            await asyncio.sleep(TICK / 2)
            deadline.progress()
    deadline.stop()
    assert deadline.reason() == "upstream attempt reached its total timeout"


async def test_someone_elses_cancellation_passes_through() -> None:
    loop = asyncio.get_running_loop()

    async def attempt() -> None:
        deadline = DeadlineWheel().start(60, 60, 60)
        try:
            with deadline:
                await asyncio.sleep(60)
        finally:
            deadline.stop()

    task = loop.create_task(attempt())
    await asyncio.sleep(TICK)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_stop_disarms_the_timer() -> None:
    deadline = DeadlineWheel().start(TICK, TICK, TICK)
    deadline.stop()
    await asyncio.sleep(5 * TICK)  # would have been cancelled here if still armed
    assert not deadline.expired
