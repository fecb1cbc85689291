"""Which version created which Responses API id: the map that keeps a conversation on its version.

Responses are stateful upstream: a request carrying `previous_response_id`, and every `GET`,
`DELETE` or `cancel` of an id, must reach the version (and so the upstream) that created it,
whatever the weights say now. `ResponseIndex` remembers id → (model, version) for
`responses.ttl_s`:

- in this process, a bounded map (`responses.local_entries`, oldest forgotten first), always;
- with `store.backend: redis`, also in Redis, so every replica and worker finds it::

      <prefix>:resp:<id>    string: JSON ["<model>", "<version>"], SET ... EX ttl_s

Unlike the metrics, this is read on the request path (only by requests that name an id, and only
when the local map misses) and written before the creating request's answer ends, so a
follow-up sent the moment the answer arrives finds it on any replica. Every Redis call is
bounded by `store.timeout_ms` and raises only `StoreError`s, and a circuit breaker
(`store.breaker_failures`, jittered backoff) stops calling a Redis that keeps failing, so
requests do not each wait out the timeout. A failed write is counted and logged (the id then
resolves only on the replica that created it); a failed read of an id unknown here is the
caller's 503.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson

from gateway.errors import StoreError, StoreUnavailable
from gateway.infra.breaker import Breaker
from gateway.infra.redis_client import bounded, close, connect

T = TypeVar("T")

log = logging.getLogger("gateway.responses")
Owner = tuple[str, str]  # (model, version)


class RedisIds:
    """The shared half: one Redis string per id, expiring with the TTL."""

    def __init__(
        self, url: str, *, cluster: bool, prefix: str, timeout_s: float, breaker: Breaker
    ) -> None:
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._breaker = breaker
        self._client: Any = connect(url, cluster=cluster, timeout_s=timeout_s)

    def key(self, rid: str) -> str:
        return f"{self._prefix}:resp:{rid}"

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """One bounded call, unless the breaker says Redis is down (then fail at once)."""
        if not self._breaker.ready():
            raise StoreUnavailable("redis is failing; the next try waits for its backoff")
        try:
            result = await bounded(make(), self._timeout_s)
        except StoreError:
            self._breaker.failure()
            raise
        self._breaker.success()
        return result

    async def put(self, rid: str, owner: Owner, ttl_s: int) -> None:
        value = orjson.dumps(owner)
        await self._call(lambda: self._client.set(self.key(rid), value, ex=ttl_s))

    async def get(self, rid: str) -> Owner | None:
        raw = await self._call(lambda: self._client.get(self.key(rid)))
        if raw is None:
            return None
        try:
            model, version = orjson.loads(raw)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            return None  # not ours: treat as unknown
        return str(model), str(version)

    async def delete(self, rid: str) -> None:
        await self._call(lambda: self._client.delete(self.key(rid)))

    async def aclose(self) -> None:
        await close(self._client, self._timeout_s)


class ResponseIndex:
    """id → (model, version) with a TTL: local first, then the shared store if there is one."""

    def __init__(
        self,
        ttl_s: int,
        local_entries: int,
        clock: Callable[[], float],
        shared: RedisIds | None = None,
    ) -> None:
        self.ttl_s = ttl_s
        self.shared = shared
        self._max = local_entries
        self._clock = clock
        self._local: OrderedDict[str, tuple[str, str, float]] = OrderedDict()
        self.errors = {"write": 0, "read": 0}
        self._failing = False

    def __len__(self) -> int:
        return len(self._local)

    def remember_local(self, rid: str, owner: Owner) -> None:
        local = self._local
        local[rid] = (owner[0], owner[1], self._clock() + self.ttl_s)
        local.move_to_end(rid)
        while len(local) > self._max:
            local.popitem(last=False)

    async def remember(self, rid: str, owner: Owner) -> None:
        """Record that `owner` created `rid`, here and in the shared store (never raises)."""
        self.remember_local(rid, owner)
        if self.shared is None:
            return
        try:
            await self.shared.put(rid, owner, self.ttl_s)
        except StoreError as err:
            self.errors["write"] += 1
            if not self._failing:
                self._failing = True
                log.warning("responses: id not shared (%s); it resolves only here", err.message)
            return
        self._failing = False

    async def lookup(self, rid: str) -> Owner | None:
        """Who created `rid`, or None if unknown or expired; `StoreError` if the shared store
        cannot say."""
        found = self._local.get(rid)
        if found is not None:
            if found[2] > self._clock():
                return found[0], found[1]
            del self._local[rid]
        if self.shared is None:
            return None
        try:
            owner = await self.shared.get(rid)
        except StoreError:
            self.errors["read"] += 1
            raise
        if owner is not None:
            self.remember_local(rid, owner)  # the shared TTL may be shorter: fine, it is a cache
        return owner

    async def forget(self, rid: str) -> None:
        """The response was deleted upstream: drop the id everywhere (best effort)."""
        self._local.pop(rid, None)
        if self.shared is not None:
            try:
                await self.shared.delete(rid)
            except StoreError:
                self.errors["write"] += 1

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()
