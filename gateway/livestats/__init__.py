"""Live per-version metrics: the store protocol, its memory and Redis backends, and the sync.

`build_sync` turns the `store` config into a ready (not yet running) `StoreSync`: the local
memory store always, plus the shared Redis store when `store.backend` is `redis` (the URL from
`GATEWAY_REDIS_URL` if set, else `store.redis_url`). `build_response_index` does the same for
the Responses API's id → version map.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from random import Random

from gateway.config.schema import Responses, Store
from gateway.infra.breaker import BASE_S, Breaker
from gateway.infra.clock import SharedClock
from gateway.livestats.base import MetricsStore
from gateway.livestats.memory import MemoryStore
from gateway.livestats.redis import RedisStore
from gateway.livestats.responses import RedisIds, ResponseIndex
from gateway.livestats.sync import SeriesSource, StoreSync
from gateway.livestats.window import Snapshot, WindowStats

__all__ = [
    "MetricsStore",
    "ResponseIndex",
    "Snapshot",
    "StoreSync",
    "WindowStats",
    "build_response_index",
    "build_sync",
]


def build_sync(
    settings: Store,
    environ: Mapping[str, str],
    series: SeriesSource,
    *,
    rng: Random | None = None,
    clock: SharedClock | None = None,
) -> StoreSync:
    clock = clock or SharedClock()
    retention = settings.window_s + 2 * settings.bucket_s
    local = MemoryStore(retention, clock.now)
    shared: MetricsStore | None = None
    if settings.backend == "redis":
        shared = RedisStore(
            settings.url(environ),
            cluster=settings.cluster,
            prefix=settings.key_prefix,
            ttl_s=retention,
            timeout_s=settings.timeout_ms / 1000,
        )
    breaker = Breaker(
        settings.breaker_failures,
        BASE_S,
        settings.backoff_max_s,
        rng or Random(),
        clock.monotonic,
    )
    return StoreSync(settings, local, shared, clock, breaker, series)


def build_response_index(
    settings: Responses,
    store: Store,
    environ: Mapping[str, str],
    clock: Callable[[], float],
    rng: Random | None = None,
) -> ResponseIndex:
    shared = None
    if store.backend == "redis":
        breaker = Breaker(
            store.breaker_failures, BASE_S, store.backoff_max_s, rng or Random(), clock
        )
        shared = RedisIds(
            store.url(environ),
            cluster=store.cluster,
            prefix=store.key_prefix,
            timeout_s=store.timeout_ms / 1000,
            breaker=breaker,
        )
    return ResponseIndex(settings.ttl_s, settings.local_entries, clock, shared)
