"""The in-process store: bucket counters in a dict, expired by age. The default backend.

Also every process's local view when the shared store is Redis: flushes go here first, so the
gateway can route on its own traffic while Redis is away. Buckets older than `retention_s`
(by the injected clock) are dropped on each write, which bounds memory to
models × versions × (retention / bucket) small dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from gateway.livestats.base import BucketKey, Fetched, Fields


class MemoryStore:
    name = "memory"

    def __init__(self, retention_s: float, clock: Callable[[], float]) -> None:
        self._retention_s = retention_s
        self._clock = clock
        self._buckets: dict[BucketKey, Fields] = {}

    async def add(self, batch: Mapping[BucketKey, Mapping[str, int]]) -> None:
        self.add_now(batch)

    def add_now(self, batch: Mapping[BucketKey, Mapping[str, int]]) -> None:
        for key, fields in batch.items():
            target = self._buckets.setdefault(key, {})
            for name, count in fields.items():
                target[name] = target.get(name, 0) + count
        self._expire()

    async def fetch(self, series: Sequence[tuple[str, str]], starts: Sequence[int]) -> Fetched:
        return self.fetch_now(series, starts)

    def fetch_now(self, series: Sequence[tuple[str, str]], starts: Sequence[int]) -> Fetched:
        self._expire()
        found: dict[BucketKey, Fields] = {}
        for model, version in series:
            for start in starts:
                fields = self._buckets.get((model, version, start))
                if fields:
                    found[(model, version, start)] = dict(fields)
        return Fetched(found, None)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)

    def _expire(self) -> None:
        oldest = self._clock() - self._retention_s
        stale = [key for key in self._buckets if key[2] < oldest]
        for key in stale:
            del self._buckets[key]
