"""The Redis store: bucket counters shared by every gateway worker and replica.

Key schema (one hash per model, version and time bucket)::

    <prefix>:{<model>}:v:<version>:<bucket_start>     e.g.  gw:{chat}:v:v2:1767225600

`<prefix>` is `store.key_prefix` (default `gw`); `<bucket_start>` is the bucket's start in Redis
server seconds (see `SharedClock`), a multiple of `store.bucket_s`. The fields are the counters
documented in `gateway.store.base` (`n`, `o:<outcome>`, `l:<i>`, `t:<i>`, `tp`, `tc`, `s:<ms>`),
written with `HINCRBY` and read with `HGETALL`; every write refreshes an `EXPIRE` of
window + 2 buckets, so nothing outlives its use. The `{<model>}` hash tag puts all of one model's
keys in one Redis Cluster slot (model names cannot contain braces), so a model's reads and writes
go to one node.

Writes and reads are pipelined (`transaction=False`), one round trip per batch. Every call is
bounded by `timeout_s` (socket, connect and an outer asyncio deadline) and never retried here:
redis-py's own retries are disabled; the caller's circuit breaker decides when to try again. The
client and the mapping of redis-py and socket exceptions onto `StoreTimeout` / `StoreUnavailable`
live in `redis_client.py`, shared with the control state and the rate limiter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from gateway.infra.redis_client import bounded, close, connect
from gateway.livestats.base import BucketKey, Fetched, Fields

T = TypeVar("T")


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, parts.query, ""))


class RedisStore:
    name = "redis"

    def __init__(
        self, url: str, *, cluster: bool, prefix: str, ttl_s: int, timeout_s: float
    ) -> None:
        self.cluster = cluster
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._client: Any = connect(url, cluster=cluster, timeout_s=timeout_s)

    def key(self, model: str, version: str, start: int) -> str:
        return f"{self._prefix}:{{{model}}}:v:{version}:{start}"

    async def add(self, batch: Mapping[BucketKey, Mapping[str, int]]) -> None:
        if not batch:
            return
        pipe = self._client.pipeline(transaction=False)
        for (model, version, start), fields in batch.items():
            key = self.key(model, version, start)
            for name, count in fields.items():
                pipe.hincrby(key, name, count)
            pipe.expire(key, self._ttl_s)
        await self._bounded(pipe.execute())

    async def fetch(self, series: Sequence[tuple[str, str]], starts: Sequence[int]) -> Fetched:
        wanted = [(m, v, s) for m, v in series for s in starts]
        pipe = self._client.pipeline(transaction=False)
        for model, version, start in wanted:
            pipe.hgetall(self.key(model, version, start))
        if self.cluster:  # TIME has no key to route by: ask one node apart
            replies = await self._bounded(pipe.execute()) if wanted else []
            clock = await self._bounded(self._client.time())
        else:
            pipe.time()
            replies = await self._bounded(pipe.execute())
            clock = replies.pop()
        found: dict[BucketKey, Fields] = {}
        for key, reply in zip(wanted, replies, strict=True):
            if reply:
                found[key] = {_text(k): int(v) for k, v in reply.items()}
        return Fetched(found, float(clock[0]) + float(clock[1]) / 1e6)

    async def ping(self) -> None:
        await self._bounded(self._client.ping())

    async def aclose(self) -> None:
        await close(self._client, self._timeout_s)

    async def _bounded(self, call: Awaitable[T]) -> T:
        return await bounded(call, self._timeout_s)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
