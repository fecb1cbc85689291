"""CurrentTask finds the running task, and follows a change of loop."""

from __future__ import annotations

import asyncio

from gateway.infra.tasks import CurrentTask


def test_finds_the_task_in_each_loop_it_is_used_from() -> None:
    current = CurrentTask()

    async def check() -> asyncio.AbstractEventLoop:
        assert current() is asyncio.current_task()
        assert current() is asyncio.current_task()  # the remembered loop
        return asyncio.get_running_loop()

    first = asyncio.run(check())
    second = asyncio.run(check())  # a new loop: it rebinds
    assert first is not second and current.loop is second


async def test_outside_a_task_is_an_error() -> None:
    current = CurrentTask()
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[str] = loop.create_future()

    def from_a_callback() -> None:  # loop callbacks run outside any task
        try:
            current()
        except RuntimeError:
            outcome.set_result("refused")
        else:
            outcome.set_result("found a task")

    loop.call_soon(from_a_callback)
    assert await outcome == "refused"
