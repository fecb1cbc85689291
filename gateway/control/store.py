"""Shared control state: per-model overrides and canary state, history, and leader leases.

A tiny protocol (`ControlStore`) with two implementations: `MemoryControl` (one process; always
the leader) and `RedisControl` (every replica). Per model the stored value is a JSON object

    {"generation": n, "weights": {...} | null, "aliases": {...}, "canary": {...} | null}

written only by compare-and-set on `generation` (`cas(model, expected, value)` stores `value` with
generation `expected + 1` and answers False when another writer got there first; generation 0
means "nothing stored yet").

Redis key schema (`<prefix>` is `store.key_prefix`, default `gw`; the `{<model>}` hash tag keeps a
model's keys in one Cluster slot, beside its metric buckets)::

    <prefix>:{<model>}:control   string: the JSON value above; CAS by a Lua script
    <prefix>:{<model>}:history   list: decision/audit records as JSON, oldest first (RPUSH+LTRIM)
    <prefix>:{<model>}:leader    string: the lease owner's id, SET NX PX; renewed by a Lua script
                                 only while the caller still owns it
    <prefix>:control:epoch       string: a random id written once (SET NX) by the first replica;
                                 every replica remembers it, so its absence or change later means
                                 the shared state was lost (a Redis restart without persistence,
                                 a flush, a failover to an empty replica)
    <prefix>:{admin}:session:<d> string "1" with the session's expiry (PX): a status-page session,
                                 keyed by the SHA-256 `d` of its id (never the id itself)

Every call is bounded by the store's short timeout and raises only `StoreError` subclasses
(`StoreTimeout`, `StoreUnavailable`); callers decide what a failure means (requests never wait on
this store: the apply loop and the controller run in the background).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from gateway.errors import StoreError
from gateway.infra.redis_client import bounded, close, connect

T = TypeVar("T")
Value = dict[str, Any]

CAS_SCRIPT = """
local raw = redis.call('GET', KEYS[1])
local gen = 0
if raw then gen = tonumber(cjson.decode(raw)['generation']) or 0 end
if gen ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""
LEASE_SCRIPT = """
local owner = redis.call('GET', KEYS[1])
if not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class ControlStore(Protocol):
    name: str

    async def get(self, model: str) -> tuple[int, Value | None]:
        """(generation, value) — (0, None) when nothing is stored."""
        ...

    async def cas(self, model: str, expected: int, value: Value) -> bool:
        """Store `value` as generation `expected + 1` if the stored one is still `expected`."""
        ...

    async def append_history(self, model: str, record: str, keep: int = 500) -> None: ...

    async def history(self, model: str, limit: int = 500) -> list[str]:
        """The newest `limit` records, oldest first."""
        ...

    async def lease(self, name: str, owner: str, ttl_s: float) -> bool:
        """Acquire or renew the lease `name` for `owner`; False while another owner holds it."""
        ...

    async def epoch(self, create: str) -> str:
        """The store's epoch id, set to `create` first if there is none (SET NX)."""
        ...

    async def persistence(self) -> dict[str, str] | None:
        """What the store keeps across its own restart ({"appendonly", "save"}); None if
        unknown (the memory backend, or CONFIG disabled)."""
        ...

    async def put_session(self, digest: str, ttl_s: float) -> None:
        """Remember the admin session with this id digest for `ttl_s` seconds."""
        ...

    async def has_session(self, digest: str) -> bool:
        """Is the session live (stored, not expired, not revoked)?"""
        ...

    async def drop_session(self, digest: str) -> None:
        """Revoke the session (logout); unknown digests are ignored."""
        ...

    async def aclose(self) -> None: ...


MAX_MEMORY_SESSIONS = 1000  # the memory store keeps at most this many; the oldest go first


def stamped(value: Value, generation: int) -> Value:
    return {**value, "generation": generation}


class MemoryControl:
    """One process's control state (the memory backend): the caller is always the leader."""

    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._values: dict[str, Value] = {}
        self._history: dict[str, list[str]] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._epoch: str | None = None
        self._sessions: dict[str, float] = {}  # digest → expiry, oldest first
        self._clock = clock

    async def get(self, model: str) -> tuple[int, Value | None]:
        value = self._values.get(model)
        if value is None:
            return 0, None
        return int(value["generation"]), json.loads(json.dumps(value))

    async def cas(self, model: str, expected: int, value: Value) -> bool:
        current, _ = await self.get(model)
        if current != expected:
            return False
        self._values[model] = json.loads(json.dumps(stamped(value, expected + 1)))
        return True

    async def append_history(self, model: str, record: str, keep: int = 500) -> None:
        items = self._history.setdefault(model, [])
        items.append(record)
        del items[: max(len(items) - keep, 0)]

    async def history(self, model: str, limit: int = 500) -> list[str]:
        return list(self._history.get(model, [])[-limit:])

    async def lease(self, name: str, owner: str, ttl_s: float) -> bool:
        now = self._clock()
        held = self._leases.get(name)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._leases[name] = (owner, now + ttl_s)
        return True

    async def epoch(self, create: str) -> str:
        if self._epoch is None:
            self._epoch = create
        return self._epoch

    async def persistence(self) -> dict[str, str] | None:
        return None

    def lose(self) -> None:
        """Forget everything, as a Redis restart without persistence would (for tests)."""
        self._values.clear()
        self._history.clear()
        self._leases.clear()
        self._epoch = None

    async def put_session(self, digest: str, ttl_s: float) -> None:
        now = self._clock()
        for old in [d for d, until in self._sessions.items() if until <= now]:
            del self._sessions[old]
        while len(self._sessions) >= MAX_MEMORY_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        self._sessions[digest] = now + ttl_s

    async def has_session(self, digest: str) -> bool:
        return self._sessions.get(digest, -1.0) > self._clock()

    async def drop_session(self, digest: str) -> None:
        self._sessions.pop(digest, None)

    async def aclose(self) -> None:
        return None


class RedisControl:
    """The control state in Redis (see the key schema above)."""

    name = "redis"

    def __init__(self, url: str, *, cluster: bool, prefix: str, timeout_s: float) -> None:
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._client: Any = connect(url, cluster=cluster, timeout_s=timeout_s, max_connections=16)
        self._cas = self._client.register_script(CAS_SCRIPT)
        self._lease = self._client.register_script(LEASE_SCRIPT)

    def key(self, model: str, kind: str) -> str:
        return f"{self._prefix}:{{{model}}}:{kind}"

    async def get(self, model: str) -> tuple[int, Value | None]:
        raw = await self._bounded(self._client.get(self.key(model, "control")))
        if raw is None:
            return 0, None
        value: Value = json.loads(raw)
        return int(value.get("generation", 0)), value

    async def cas(self, model: str, expected: int, value: Value) -> bool:
        data = json.dumps(stamped(value, expected + 1))
        done = await self._bounded(
            self._cas(keys=[self.key(model, "control")], args=[expected, data])
        )
        return bool(done)

    async def append_history(self, model: str, record: str, keep: int = 500) -> None:
        key = self.key(model, "history")
        pipe = self._client.pipeline(transaction=False)
        pipe.rpush(key, record)
        pipe.ltrim(key, -keep, -1)
        await self._bounded(pipe.execute())

    async def history(self, model: str, limit: int = 500) -> list[str]:
        items = await self._bounded(self._client.lrange(self.key(model, "history"), -limit, -1))
        return [i.decode() if isinstance(i, bytes) else str(i) for i in items]

    async def lease(self, name: str, owner: str, ttl_s: float) -> bool:
        ms = max(int(ttl_s * 1000), 1)
        got = await self._bounded(self._lease(keys=[self.key(name, "leader")], args=[owner, ms]))
        return bool(got)

    async def epoch(self, create: str) -> str:
        key = f"{self._prefix}:control:epoch"
        pipe = self._client.pipeline(transaction=False)
        pipe.set(key, create, nx=True)
        pipe.get(key)
        _, raw = await self._bounded(pipe.execute())
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def persistence(self) -> dict[str, str] | None:
        out = {}
        try:
            for name in ("appendonly", "save"):
                reply = await self._bounded(self._client.config_get(name))
                value = reply.get(name, reply.get(name.encode(), ""))
                out[name] = value.decode() if isinstance(value, bytes) else str(value)
        except StoreError:  # CONFIG renamed or disabled (managed Redis): unknown
            return None
        return out

    def _session(self, digest: str) -> str:
        return f"{self._prefix}:{{admin}}:session:{digest}"

    async def put_session(self, digest: str, ttl_s: float) -> None:
        ms = max(int(ttl_s * 1000), 1)
        await self._bounded(self._client.set(self._session(digest), "1", px=ms))

    async def has_session(self, digest: str) -> bool:
        return bool(await self._bounded(self._client.exists(self._session(digest))))

    async def drop_session(self, digest: str) -> None:
        await self._bounded(self._client.delete(self._session(digest)))

    async def aclose(self) -> None:
        await close(self._client, self._timeout_s)

    async def _bounded(self, call: Awaitable[T]) -> T:
        return await bounded(call, self._timeout_s)
