"""The store contract, run against every backend: memory, a real redis-server, a 3-node cluster.

Each test gets its own key prefix, so tests sharing one server never see each other's data.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from gateway.livestats.base import MetricsStore
from gateway.livestats.memory import MemoryStore
from gateway.livestats.redis import RedisStore
from tests.redis_harness import RedisServer, redis_cluster, redis_server

BACKENDS = ["memory", "redis", "cluster"]
Factory = Callable[..., MetricsStore]
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def redis_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServer]]:
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as servers:
        yield servers


@pytest.fixture(params=BACKENDS)
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """A factory of stores of one backend, all on the same data (one prefix per test)."""
    made: list[MetricsStore] = []
    prefix = f"t{next(_prefixes)}x{int(time.time() * 1000) % 100000}"
    memory_data: list[MemoryStore] = []

    def factory(ttl_s: int = 60) -> MetricsStore:
        store: MetricsStore
        if request.param == "memory":
            if not memory_data:  # one memory store stands for "the same data"
                memory_data.append(MemoryStore(ttl_s, time.time))
            store = memory_data[0]
        else:
            server = (
                request.getfixturevalue("redis_single")
                if request.param == "redis"
                else request.getfixturevalue("cluster")[0]
            )
            store = RedisStore(
                server.url.removesuffix("/0"),
                cluster=request.param == "cluster",
                prefix=prefix,
                ttl_s=ttl_s,
                timeout_s=2.0,
            )
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.aclose()


def now_bucket(bucket_s: int = 5) -> int:
    return int(time.time() // bucket_s) * bucket_s


async def test_added_counters_read_back_as_sums(make: Factory) -> None:
    store = make()
    start = now_bucket()
    await store.add({("chat", "v1", start): {"n": 3, "o:success": 2, "l:40": 2}})
    await store.add({("chat", "v1", start): {"n": 1, "o:timeout": 1, "l:40": 5}})
    got = await store.fetch([("chat", "v1")], [start])
    assert got.buckets == {
        ("chat", "v1", start): {"n": 4, "o:success": 2, "o:timeout": 1, "l:40": 7}
    }


async def test_reads_only_what_was_asked_and_skips_missing_buckets(make: Factory) -> None:
    store = make()
    start = now_bucket()
    await store.add(
        {
            ("chat", "v1", start): {"n": 1},
            ("chat", "v2", start): {"n": 2},
            ("chat", "v1", start - 5): {"n": 3},
            ("code", "v1", start): {"n": 4},
        }
    )
    got = await store.fetch([("chat", "v1"), ("chat", "v3")], [start - 10, start - 5, start])
    assert got.buckets == {("chat", "v1", start - 5): {"n": 3}, ("chat", "v1", start): {"n": 1}}
    assert (await store.fetch([], [start])).buckets == {}


async def test_writers_on_separate_clients_add_up(make: Factory) -> None:
    one, two = make(), make()
    start = now_bucket()
    key = ("chat", "v1", start)

    async def writes(store: MetricsStore) -> None:
        for _ in range(25):
            await store.add({key: {"n": 1, "tp": 10}})

    await asyncio.gather(writes(one), writes(two), writes(one))
    for store in (one, two):
        assert (await store.fetch([("chat", "v1")], [start])).buckets[key] == {"n": 75, "tp": 750}


async def test_buckets_expire_after_their_retention(make: Factory) -> None:
    store = make(ttl_s=1)
    start = now_bucket(1)
    await store.add({("chat", "v1", start): {"n": 1}})
    assert (await store.fetch([("chat", "v1")], [start])).buckets
    deadline = time.monotonic() + 2.2  # the 1 s retention of a bucket of up to 1 s, and slack
    while True:
        await store.add({("chat", "v2", now_bucket(1)): {"n": 1}})  # memory expires on writes
        left = (await store.fetch([("chat", "v1")], [start])).buckets
        if left == {}:
            break
        assert time.monotonic() < deadline, f"bucket still there after its retention: {left}"
        await asyncio.sleep(0.05)


async def test_ping_and_server_clock(make: Factory) -> None:
    store = make()
    await store.ping()
    got = await store.fetch([("chat", "v1")], [now_bucket()])
    if store.name == "redis":
        assert got.server_time is not None and abs(got.server_time - time.time()) < 5
    else:
        assert got.server_time is None


async def test_model_keys_share_one_cluster_slot(cluster: list[RedisServer]) -> None:
    store = RedisStore(
        cluster[0].url.removesuffix("/0"), cluster=True, prefix="gw", ttl_s=5, timeout_s=2
    )
    keys = [store.key("chat", v, s) for v in ("v1", "v2", "a:b") for s in (0, 5, 1767225600)]
    slots = {cluster[0].cli("CLUSTER", "KEYSLOT", k).strip() for k in keys}
    assert len(slots) == 1
    other = cluster[0].cli("CLUSTER", "KEYSLOT", store.key("code", "v1", 0)).strip()
    assert other not in slots  # different models spread over the cluster
    await store.aclose()


def test_key_schema_is_documented_shape() -> None:
    store = RedisStore("redis://127.0.0.1:1", cluster=False, prefix="gw", ttl_s=5, timeout_s=0.1)
    assert store.key("chat", "v2", 1767225600) == "gw:{chat}:v:v2:1767225600"
