"""Rate limits shared through a real redis-server: exact GCRA across replicas, token settling,
leased credits in a burst, and the local fallback when Redis is gone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from random import Random

import pytest

from gateway.config.schema import RateLimit
from gateway.infra.breaker import Breaker
from gateway.infra.redis_client import connect, script
from gateway.ratelimit.gcra import LocalLimiter, RateLimited
from gateway.ratelimit.shared import GCRA, SharedLimiter
from tests.redis_harness import RedisServer, redis_server


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("rl-redis")) as server:
        yield server


def limiter(url: str, share: float = 1.0, timeout_s: float = 0.2) -> SharedLimiter:
    client = connect(url, cluster=False, timeout_s=timeout_s)
    breaker = Breaker(2, 0.05, 0.5, Random(1), time.monotonic)
    local = LocalLimiter(time.monotonic)
    return SharedLimiter(script(client, GCRA, timeout_s), "t", local, share, breaker)


async def admitted(
    lim: SharedLimiter, key: str, limit: RateLimit, n: int, body: dict[str, object] | None = None
) -> int:
    ok = 0
    for _ in range(n):
        try:
            await lim.reserve(key, limit, body or {"max_tokens": 1}, 4)
            ok += 1
        except RateLimited:
            pass
    return ok


async def test_two_replicas_share_one_exact_limit(redis: RedisServer) -> None:
    a, b = limiter(redis.url), limiter(redis.url)
    limit = RateLimit(requests_per_minute=300)
    started = time.monotonic()
    got = await asyncio.gather(admitted(a, "k1", limit, 250), admitted(b, "k1", limit, 250))
    elapsed = time.monotonic() - started
    expected = 300 + int(elapsed * 300 / 60)  # a full minute of burst, then 5 per second
    assert 300 <= sum(got) <= expected + 1
    assert got[0] > 50 and got[1] > 50  # both replicas drew from the same budget


async def test_refusal_carries_retry_after_and_headers(redis: RedisServer) -> None:
    lim = limiter(redis.url)
    limit = RateLimit(requests_per_minute=2)
    await admitted(lim, "k2", limit, 2)
    with pytest.raises(RateLimited) as info:
        await lim.reserve("k2", limit, {}, 0)
    headers = dict(info.value.headers())
    assert 29 <= info.value.retry_after <= 31 and headers[b"retry-after"] in (b"30", b"31")
    assert headers[b"x-ratelimit-remaining-requests"] == b"0"


async def test_token_reservations_are_settled(redis: RedisServer) -> None:
    lim = limiter(redis.url)
    limit = RateLimit(tokens_per_minute=1000)
    ticket = await lim.reserve("k3", limit, {"max_tokens": 596}, 16)  # 4 prompt + 596 = 600
    assert ticket is not None and ticket.reserved == 600
    with pytest.raises(RateLimited):
        await lim.reserve("k3", limit, {"max_tokens": 596}, 16)
    lim.settle(ticket, 100)  # 500 tokens handed back, carried by the key's next call
    assert await lim.reserve("k3", limit, {"max_tokens": 396}, 16) is not None  # 100 + 400 ≤ 1000


async def test_redis_down_falls_back_to_a_local_share_never_unlimited(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    lim = limiter(server.url, share=0.5, timeout_s=0.05)
    server.kill()
    limit = RateLimit(requests_per_minute=40)
    got = await admitted(lim, "k4", limit, 100)
    assert got == 20 and lim.fallbacks == 100  # half of the limit, enforced locally


async def test_leases_across_replicas_keep_a_burst_within_one_percent(redis: RedisServer) -> None:
    replicas = [limiter(redis.url) for _ in range(3)]
    limit = RateLimit(requests_per_minute=12_000)  # 200 a second; a lease holds up to 12
    started = time.monotonic()
    got = await asyncio.gather(*(admitted(r, "k5", limit, 4400) for r in replicas))
    elapsed = time.monotonic() - started
    exact = 12_000 + elapsed * 200  # a full minute of burst, then 200 a second meanwhile
    assert 12_000 - 3 * 12 <= sum(got) <= exact + 3 * 12 + 1  # off by at most 1 lease a replica
    assert sum(r.leased for r in replicas) > 9_000  # most admissions made no round trip


async def test_more_requests_in_flight_than_connections_wait_for_one(redis: RedisServer) -> None:
    # a full connection pool must queue the call, not fail it over to the local fallback
    lim = limiter(redis.url)
    limit = RateLimit(requests_per_minute=999)  # no lease: every request asks Redis
    got = await asyncio.gather(*(admitted(lim, "k6", limit, 1) for _ in range(64)))
    assert sum(got) == 64 and lim.fallbacks == 0
