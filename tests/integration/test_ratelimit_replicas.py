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


def test_limits_hold_across_replicas(mocks: tuple[Mock, Mock], workdir: Path) -> None:
    with (
        redis_server(workdir / "rl") as redis,
        gateway(config(mocks[0], redis.url), workdir) as one,
        gateway(config(mocks[0], redis.url), workdir) as two,
    ):
        admitted, waits, elapsed = asyncio.run(drive([one.base, two.base]))
    print(f"\nelapsed {elapsed:.1f}s admitted {admitted} 429s {[len(w) for w in waits.values()]}")
    for kid, (_, rpm) in KEYS.items():
        ceiling = rpm + math.ceil((elapsed + 1) * rpm / 60)  # burst + the steady rate meanwhile
        assert rpm - 0.01 * rpm <= admitted[kid] <= ceiling + 0.01 * rpm, (
            kid,
            admitted[kid],
            ceiling,
        )
        assert waits[kid] and all(1 <= w <= math.ceil(60 / rpm) + 1 for w in waits[kid])
    assert sum(admitted.values()) + sum(len(w) for w in waits.values()) == TOTAL
