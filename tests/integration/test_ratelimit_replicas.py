"""Per-key limits held across two gateway replicas sharing one Redis: 10,000 requests from 3
keys; each key's admitted count matches its limit to within 1 %, the rest get 429 with a
Retry-After no longer than one emission interval."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from pathlib import Path

import httpx

from tests.redis_harness import redis_server
from tests.support import Mock, gateway, secret

KEYS = {
    "app-a": (secret("rl-key-a-5d8e2f7c9b1a"), 600),
    "app-b": (secret("rl-key-b-3c6a9e1f7d2b"), 1200),
    "app-c": (secret("rl-key-c-8b2e4a6c0f9d"), 300),
}
TOTAL = 10_000


def config(mock: Mock, redis_url: str) -> dict[str, object]:
    return {
        "store": {"backend": "redis", "redis_url": redis_url},
        "auth": {
            "keys": [
                {
                    "id": kid,
                    "sha256": hashlib.sha256(key.encode()).hexdigest(),
                    "rate_limit": {"requests_per_minute": rpm},
                }
                for kid, (key, rpm) in KEYS.items()
            ]
        },
        "logging": {"access": False},
        "models": {
            "chat": {"versions": {"v1": {"upstream": {"url": mock.url, "model": mock.model}}}}
        },
    }


async def drive(bases: list[str]) -> tuple[dict[str, int], dict[str, list[int]], float]:
    admitted = dict.fromkeys(KEYS, 0)
    waits: dict[str, list[int]] = {k: [] for k in KEYS}
    order = [kid for _ in range(TOTAL // len(KEYS) + 1) for kid in KEYS][:TOTAL]
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for i, kid in enumerate(order):
        queue.put_nowait((i, kid))

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i, kid = queue.get_nowait()
            resp = await client.post(
                bases[i % 2] + "/v1/chat/completions",
                json={"model": "chat", "max_tokens": 8},
                headers={"authorization": f"Bearer {KEYS[kid][0]}"},
            )
            if resp.status_code == 200:
                admitted[kid] += 1
            else:
                assert resp.status_code == 429, resp.text
                waits[kid].append(int(resp.headers["retry-after"]))

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.gather(*(worker(client) for _ in range(24)))
    return admitted, waits, time.monotonic() - started


def fallback_lines(base: str) -> list[str]:
    """The replica's `gateway_ratelimit_fallback_total` series (to explain a miss)."""
    text = httpx.get(base + "/metrics").text
    return [line for line in text.splitlines() if line.startswith("gateway_ratelimit_fallback")]


def test_limits_hold_across_replicas(mocks: tuple[Mock, Mock], workdir: Path) -> None:
    with (
        redis_server(workdir / "rl") as redis,
        gateway(config(mocks[0], redis.url), workdir) as one,
        gateway(config(mocks[0], redis.url), workdir) as two,
    ):
        admitted, waits, elapsed = asyncio.run(drive([one.base, two.base]))
        fallbacks = [fallback_lines(g.base) for g in (one, two)]
    print(f"\nelapsed {elapsed:.1f}s admitted {admitted} 429s {[len(w) for w in waits.values()]}")
    print(f"fallbacks per replica: {fallbacks}")
    for kid, (_, rpm) in KEYS.items():
        ceiling = rpm + math.ceil((elapsed + 1) * rpm / 60)  # burst + the steady rate meanwhile
        assert rpm - 0.01 * rpm <= admitted[kid] <= ceiling + 0.01 * rpm, (
            kid,
            admitted[kid],
            ceiling,
        )
        assert waits[kid] and all(1 <= w <= math.ceil(60 / rpm) + 1 for w in waits[kid])
    assert sum(admitted.values()) + sum(len(w) for w in waits.values()) == TOTAL


BURST_KEYS = {f"burst-{run}": secret(f"rl-burst-key-{run:02d}-7e3a91c4") for run in range(10)}
BURST_LIMIT = 20


def burst_config(mock: Mock, redis_url: str) -> dict[str, object]:
    """Ten keys of 20 requests a minute: one fresh key per burst, so the runs are independent."""
    cfg = config(mock, redis_url)
    cfg["auth"] = {
        "keys": [
            {
                "id": kid,
                "sha256": hashlib.sha256(key.encode()).hexdigest(),
                "rate_limit": {"requests_per_minute": BURST_LIMIT},
            }
            for kid, key in BURST_KEYS.items()
        ]
    }
    return cfg


async def burst(bases: list[str], key: str, size: int = 60) -> tuple[int, list[int]]:
    """`size` requests at once, alternating between the replicas: (admitted, other statuses)."""
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    bases[i % 2] + "/v1/chat/completions",
                    json={"model": "chat", "max_tokens": 8},
                    headers={"authorization": f"Bearer {key}"},
                )
                for i in range(size)
            )
        )
    codes = [a.status_code for a in answers]
    return codes.count(200), [c for c in codes if c != 200]


def test_bursts_across_replicas_admit_at_most_the_limit(
    mocks: tuple[Mock, Mock], workdir: Path
) -> None:
    """Issue 14 §4: bursts of 60 concurrent requests split over two replicas against a 20/minute
    key admit at most 22 in every one of 10 runs (they admitted 34, 31, 20 and 28 when the
    gateway's own connection warm-up and queueing timed out the 50 ms Redis budget, tripped the
    breaker and sent each replica to its local fallback limiter)."""
    with (
        redis_server(workdir / "burst") as redis,
        gateway(burst_config(mocks[0], redis.url), workdir) as one,
        gateway(burst_config(mocks[0], redis.url), workdir) as two,
    ):
        results = [asyncio.run(burst([one.base, two.base], key)) for key in BURST_KEYS.values()]
        scrapes = [httpx.get(g.base + "/metrics").text for g in (one, two)]
    print(f"\nadmitted per burst: {[admitted for admitted, _ in results]}")
    for admitted, others in results:
        assert BURST_LIMIT <= admitted <= BURST_LIMIT + 2, results
        assert set(others) == {429}, others
    for text in scrapes:
        assert (
            "gateway_ratelimit_fallback_total" in text
            and "gateway_ratelimit_breaker_open 0" in text
        )
