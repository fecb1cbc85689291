"""The canary rig the end-to-end canary tests share: two mock versions, a private redis-server
and gateway replicas on a canary config scaled for CI time (1-second buckets, steps 20/40/60 %
of 80 samples and 2 to 30 s, no warm-up, a 5-point absolute error margin), and the admin calls
that read a canary's state. Its fixtures are in `tests/integration/canary/conftest.py`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.redis_harness import RedisServer
from tests.support import Gateway, Mock, gateway, version

TOKEN = "adm-" + "c" * 28
ENV = {"ADMIN_TOKEN": TOKEN}
AUTH = {"authorization": f"Bearer {TOKEN}"}
PREFIX = iter(f"c{i}" for i in range(1000))


def config(mocks: tuple[Mock, Mock], redis: RedisServer, **analysis: Any) -> dict[str, Any]:
    base, cand = mocks
    step = {"min_samples": 80, "min_duration_s": 2, "max_duration_s": 30}
    return {
        "admin": {"token_env": "ADMIN_TOKEN"},
        "drain": {"window_s": 0, "deadline_s": 1},
        "logging": {"access": False},
        "store": {
            "backend": "redis",
            "redis_url": redis.url,
            "key_prefix": next(PREFIX),
            "bucket_s": 1,
            "window_s": 60,
        },
        "models": {
            "chat": {
                "aliases": {"stable": "v1"},
                "versions": {
                    "v1": version(base.url, base.model),
                    "v2": version(cand.url, cand.model),
                },
                "routing": {
                    "strategy": "canary",
                    "sticky_key": "header:x-session-id",
                    "retry": {"attempts": 1},
                    "canary": {
                        "baseline": "v1",
                        "candidate": "v2",
                        "steps": [{"weight": w, **step} for w in (20, 40, 60)],
                        "analysis": {
                            "bucket_s": 1,
                            "warmup_requests": 0,
                            "warmup_s": 0,
                            "error_margin_abs": 0.05,
                            "metric": "none",
                            **analysis,
                        },
                    },
                },
            }
        },
    }


@contextmanager
def replicas(cfg: dict[str, Any], workdir: Path) -> Iterator[list[Gateway]]:
    with gateway(cfg, workdir, env=ENV) as one, gateway(cfg, workdir, env=ENV) as two:
        yield [one, two]


def status(g: Gateway) -> dict[str, Any]:
    resp = httpx.get(f"{g.base}/admin/models/chat/canary", headers=AUTH, timeout=5)
    resp.raise_for_status()
    return dict(resp.json())


def status_when_readable(g: Gateway) -> dict[str, Any] | None:
    """The canary's status, or None while the replica cannot read the control store (503: it is
    reconnecting to a restarted Redis)."""
    resp = httpx.get(f"{g.base}/admin/models/chat/canary", headers=AUTH, timeout=5)
    if resp.status_code == 503:
        return None
    resp.raise_for_status()
    return dict(resp.json())


def applied_at(gws: list[Gateway], weight: float, timeout: float) -> list[float]:
    """Wall-clock times at which each replica first routes with the candidate at `weight`."""
    seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(gws) and time.monotonic() < deadline:
        for i, g in enumerate(gws):
            if i not in seen and status(g)["applied_weight"] == weight:
                seen[i] = time.time()
        time.sleep(0.02)
    assert len(seen) == len(gws), f"weight {weight} not applied on every replica: {seen}"
    return [seen[i] for i in range(len(gws))]


def reset(mocks: tuple[Mock, Mock]) -> None:
    for m in mocks:
        m.configure(error_rate=0.0, ttft_ms=None, latency_ms=10)
