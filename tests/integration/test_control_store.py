"""The control-store contract over memory and a real redis-server: CAS, leases, history."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from gateway.control.store import ControlStore, MemoryControl, RedisControl
from gateway.errors import StoreError
from tests.redis_harness import RedisServer, redis_server

PREFIXES = itertools.count()


@pytest.fixture(scope="module")
def redis_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ControlStore]:
    made: ControlStore
    if request.param == "memory":
        made = MemoryControl()
    else:
        server: RedisServer = request.getfixturevalue("redis_single")
        made = RedisControl(server.url, cluster=False, prefix=f"t{next(PREFIXES)}", timeout_s=1.0)
    yield made
    await made.aclose()


async def test_cas_on_the_generation(store: ControlStore) -> None:
    assert await store.get("chat") == (0, None)
    assert await store.cas("chat", 0, {"weights": {"v1": 1}})
    generation, value = await store.get("chat")
    assert generation == 1 and value is not None and value["weights"] == {"v1": 1}
    assert not await store.cas("chat", 0, {"weights": {"v2": 1}})  # stale: another writer won
    assert await store.cas("chat", 1, {"weights": {"v2": 1}})
    assert (await store.get("chat"))[0] == 2
    assert (await store.get("other"))[0] == 0  # per model


async def test_concurrent_cas_has_exactly_one_winner(store: ControlStore) -> None:
    results = await asyncio.gather(*(store.cas("m", 0, {"n": i}) for i in range(8)))
    assert sum(results) == 1


async def test_lease_is_exclusive_and_expires(store: ControlStore) -> None:
    loop = asyncio.get_running_loop()
    assert await store.lease("chat", "a", 0.3)
    renewed = loop.time()
    assert await store.lease("chat", "a", 0.3)  # renew
    assert not await store.lease("chat", "b", 0.3)
    assert await store.lease("other", "b", 0.3)  # per name
    while not await store.lease("chat", "b", 0.3):  # expired: taken over
        assert loop.time() < renewed + 5, "the renewed lease never expired"
        await asyncio.sleep(0.02)
    assert loop.time() - renewed > 0.25  # not before its ttl ran out
    assert not await store.lease("chat", "a", 0.3)


async def test_history_is_oldest_first_and_trimmed(store: ControlStore) -> None:
    for i in range(7):
        await store.append_history("chat", f'{{"i": {i}}}', keep=5)
    assert await store.history("chat") == [f'{{"i": {i}}}' for i in range(2, 7)]
    assert await store.history("chat", limit=2) == ['{"i": 5}', '{"i": 6}']


async def test_admin_sessions_expire_and_revoke(store: ControlStore) -> None:
    assert not await store.has_session("d1")
    await store.put_session("d1", 0.3)
    await store.put_session("d2", 30)
    assert await store.has_session("d1") and await store.has_session("d2")
    await store.drop_session("d2")  # logout
    assert not await store.has_session("d2")
    await store.drop_session("unknown")
    deadline = asyncio.get_running_loop().time() + 5
    while await store.has_session("d1"):  # expires on its own
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)


def test_memory_sessions_are_bounded() -> None:
    from gateway.control.store import MAX_MEMORY_SESSIONS
    from tests.support import ManualClock

    clock = ManualClock()
    store = MemoryControl(clock)

    async def fill() -> None:
        for i in range(MAX_MEMORY_SESSIONS + 5):
            await store.put_session(f"d{i}", 60)
        assert not await store.has_session("d0")  # the oldest went first
        assert await store.has_session(f"d{MAX_MEMORY_SESSIONS + 4}")
        clock.now += 61
        assert not await store.has_session(f"d{MAX_MEMORY_SESSIONS + 4}")

    asyncio.run(fill())
    assert len(store._sessions) == MAX_MEMORY_SESSIONS


async def test_redis_failures_are_store_errors() -> None:
    from tests.support import free_port

    dead = RedisControl(
        f"redis://127.0.0.1:{free_port()}/0", cluster=False, prefix="x", timeout_s=0.2
    )
    calls: list[Callable[[], object]] = [
        lambda: dead.get("chat"),
        lambda: dead.cas("chat", 0, {}),
        lambda: dead.lease("chat", "a", 1),
    ]
    for call in calls:
        with pytest.raises(StoreError):
            await call()  # type: ignore[misc]
    await dead.aclose()
