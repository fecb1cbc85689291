"""Rate limits shared by every replica: the GCRA of `ratelimit.py`, run atomically in Redis.

Key schema: `<prefix>:{rl:<key id>}:requests` and `<prefix>:{rl:<key id>}:tokens`, each holding
one number, the key's theoretical arrival time in Redis milliseconds (the `{rl:<key id>}` hash tag
puts both in one Cluster slot). One Lua call checks both limits against Redis `TIME` (one clock
for every replica) and advances both only when both admit. Far from the limit the same call also
charges a small lease of credits the replica then spends locally with no round trip
(`ratelimit_lease.py` sizes it and bounds the error: at most one lease, 0.1 % of the limit, per
replica); near the limit the lease is 0 and every request is judged by Redis, exactly. Settling a
token reservation moves the token TAT by `(used - reserved) × interval`, and handing back unused
lease credits moves either TAT back; these corrections are carried by the key's next call,
applied first in the same script, so a call to Redis is always exactly one round trip (until
then the reservation stands, which errs on the safe side). Keys expire a little after a full
window. Script arguments: limits, reserved tokens, window (ms), the two corrections (ms), the
lease divisor and the two lease caps; reply: admitted, wait (ms), remaining requests and tokens
(after the lease), lease size in like requests.

This is the one place a request may wait on Redis, and only for keys that have limits and no
lease that fits: a single round trip bounded by `auth.timeout_ms`. The gateway's own queueing
is kept out of that budget: the limiter's `SLOTS` connections are opened and the script loaded
at start-up (`start`), and a call first waits for a free connection (bounded by the queue budget,
never a Redis failure), then runs with the whole budget for Redis alone. If Redis is slow or
unreachable, a circuit breaker sends requests to a local limiter that enforces
`auth.fallback_share` of each limit per replica (1.0 by default; set 1/replicas for a strict
bound) — never unlimited; `ratelimit.fallback` logs and exports every switch. A lease already
held is still spent while the breaker is open (its credits were charged in Redis).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from random import Random
from typing import Any

from gateway.config.schema import Auth, GatewayConfig, RateLimit
from gateway.errors import StoreError
from gateway.infra.breaker import BASE_S, Breaker
from gateway.infra.redis_client import Script, close, connect, script, warm
from gateway.ratelimit.fallback import FallbackReport
from gateway.ratelimit.gcra import (
    WINDOW_S,
    Limiter,
    LocalLimiter,
    RateLimited,
    Ticket,
    reserve_tokens,
)
from gateway.ratelimit.lease import LEASE_DIVISOR, NO_REFUND, Leases, Refund, add, lease_caps

SLOTS = 16  # pooled connections (and concurrent calls) per process
AUTH_DEFAULTS = (
    Auth.model_fields["timeout_ms"].default,
    Auth.model_fields["fallback_share"].default,
)
QUEUE_S = 0.5  # longest wait for a free connection before judging locally (not a Redis failure)
log = logging.getLogger("gateway.ratelimit")

GCRA = """
local window = tonumber(ARGV[4])
for i = 1, 2 do
  if tonumber(ARGV[4 + i]) ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBYFLOAT', KEYS[i], ARGV[4 + i])
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {1, 0, -1, -1, 0}
local costs, new, step, lease = {1, tonumber(ARGV[3])}, {}, {}, -1
for i = 1, 2 do
  local limit = tonumber(ARGV[i])
  if limit > 0 then
    local interval = window / limit
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    local start = math.max(tat, now)
    local nt = start + costs[i] * interval
    local excess = nt - now - window
    if excess > 0 then
      out[1] = 0
      out[2] = math.max(out[2], math.ceil(excess))
      out[2 + i] = math.max(0, math.floor((window - (start - now)) / interval))
    else
      new[i], step[i] = nt, costs[i] * interval
      out[2 + i] = math.floor((window - (nt - now)) / interval)
      local room = math.min(math.floor(out[2 + i] / tonumber(ARGV[7])), tonumber(ARGV[7 + i]))
      local fits = math.floor(room / math.max(costs[i], 1))
      if lease < 0 or fits < lease then lease = fits end
    end
  end
end
if out[1] == 1 then
  out[5] = math.max(lease, 0)
  for i = 1, 2 do
    if new[i] then
      out[2 + i] = out[2 + i] - out[5] * costs[i]
      local tat = string.format('%.17g', new[i] + out[5] * step[i])
      redis.call('SET', KEYS[i], tat, 'PX', window + 1000)
    end
  end
end
return out
"""


class SharedLimiter:
    def __init__(
        self,
        gcra: Script,
        prefix: str,
        local: LocalLimiter,
        share: float,
        breaker: Breaker,
        clock: Callable[[], float] = time.monotonic,
        *,
        slots: int = SLOTS,
        queue_s: float = QUEUE_S,
        report: FallbackReport | None = None,
        warm: Callable[[], Awaitable[None]] | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._gcra = gcra
        self._prefix = prefix
        self._local = local
        self._share = share
        self._breaker = breaker
        self._clock = clock
        self._slots = asyncio.Semaphore(slots)  # one per pooled connection: calls never wait
        self._queue_s = queue_s  # the wait for a free connection, kept out of the Redis budget
        self.report = report or FallbackReport(lambda _: None, lambda _: None, clock)
        self._warm = warm
        self._close = close
        self._leases = Leases()
        self._unsettled: dict[str, Refund] = {}  # TAT corrections, sent with the key's next call
        self.leased = 0  # requests admitted from a lease, without a round trip

    @property
    def fallbacks(self) -> int:
        """Requests judged locally (Redis unavailable, too slow, or the queue too long)."""
        return self.report.total

    async def start(self) -> None:
        """Open the pooled connections and load the script before the first request, so a
        burst never pays connection set-up or a script load inside its Redis budget."""
        if self._warm is not None:
            try:
                await self._warm()
            except StoreError as exc:  # Redis not there yet: connections open on first use
                log.warning("rate-limit connections not warmed: %s", exc)

    async def stop(self) -> None:
        if self._close is not None:
            await self._close()

    async def reserve(
        self, key: str, limit: RateLimit, payload: dict[str, object], body_bytes: int
    ) -> Ticket | None:
        if limit.requests_per_minute is None and limit.tokens_per_minute is None:
            return None
        tokens = reserve_tokens(payload, body_bytes)
        now = self._clock()
        if self._leases.take(key, limit, tokens, now):
            self.leased += 1
            return Ticket(key, limit, tokens)
        verdict = await self._shared(key, limit, tokens, now) if self._breaker.ready() else None
        if isinstance(verdict, Ticket):
            return verdict
        self.report.fallback(verdict or "breaker_open")
        return await self._local.reserve(key, _scaled(limit, self._share), payload, body_bytes)

    async def _shared(self, key: str, limit: RateLimit, tokens: int, now: float) -> Ticket | str:
        """Redis's verdict (a ticket, or `RateLimited` raised), or why it could not be had.

        Waiting for a free connection is bounded by the queue budget and is never a Redis
        failure; only the call itself, on a connection already open, is timed and can trip
        the breaker."""
        try:
            async with asyncio.timeout(self._queue_s):
                await self._slots.acquire()
        except TimeoutError:
            return "queue"
        try:
            if not self._breaker.ready():  # it opened while this request waited
                return "breaker_open"
            adjust = add(self._unsettled.pop(key, NO_REFUND), self._leases.release(key))
            try:
                reply = await self._gcra(self._keys(key), _args(limit, tokens, adjust))
            except StoreError:
                self._breaker.failure()
                self._carry(key, adjust)
                self.report.breaker(not self._breaker.closed)
                return "store_error"
            self._breaker.success()
            self.report.breaker(False)
            return self._admit(key, limit, tokens, reply, now)
        finally:
            self._slots.release()

    def settle(self, ticket: Ticket, used: int) -> None:
        """Queue the token correction; it rides on the key's next call (one round trip each)."""
        per_minute = ticket.limit.tokens_per_minute
        if per_minute is None or not used or used == ticket.reserved:
            return
        delta_ms = (used - ticket.reserved) * WINDOW_S * 1000 / per_minute
        self._carry(ticket.key, (0.0, delta_ms))

    def _admit(
        self, key: str, limit: RateLimit, tokens: int, reply: Sequence[Any], now: float
    ) -> Ticket:
        """Raise `RateLimited` on a refusal; else hold the lease that came with the admission."""
        if not int(reply[0]):
            raise _refusal(limit, reply)
        self._carry(key, self._leases.grant(key, limit, int(reply[4]), tokens, now))
        return Ticket(key, limit, tokens)

    def _carry(self, key: str, adjust: Refund) -> None:
        if adjust != NO_REFUND:
            self._unsettled[key] = add(self._unsettled.get(key, NO_REFUND), adjust)

    def _keys(self, key: str) -> list[str]:
        base = f"{self._prefix}:{{rl:{key}}}"
        return [f"{base}:requests", f"{base}:tokens"]


def _args(limit: RateLimit, tokens: int, adjust: Refund) -> list[Any]:
    cap_requests, cap_tokens = lease_caps(limit)
    return [
        limit.requests_per_minute or 0,
        limit.tokens_per_minute or 0,
        tokens,
        int(WINDOW_S * 1000),
        repr(adjust[0]),
        repr(adjust[1]),
        LEASE_DIVISOR,
        cap_requests,
        cap_tokens,
    ]


def _scaled(limit: RateLimit, share: float) -> RateLimit:
    def part(value: int | None) -> int | None:
        return None if value is None else max(1, math.floor(value * share))

    return RateLimit(
        requests_per_minute=part(limit.requests_per_minute),
        tokens_per_minute=part(limit.tokens_per_minute),
    )


def _refusal(limit: RateLimit, reply: Sequence[Any]) -> RateLimited:
    wait = int(reply[1]) / 1000
    headers: list[tuple[bytes, bytes]] = []
    for kind, per_minute, remaining in (
        ("requests", limit.requests_per_minute, int(reply[2])),
        ("tokens", limit.tokens_per_minute, int(reply[3])),
    ):
        if per_minute is not None:
            headers.append((f"x-ratelimit-limit-{kind}".encode(), str(per_minute).encode()))
            headers.append(
                (f"x-ratelimit-remaining-{kind}".encode(), str(max(remaining, 0)).encode())
            )
    headers.append((b"retry-after", str(max(1, math.ceil(wait))).encode()))
    return RateLimited(f"rate limit exceeded for this API key; retry in {wait:.1f}s", wait, headers)


def build_limiter(
    cfg: GatewayConfig,
    environ: Mapping[str, str],
    rng: Random,
    local: LocalLimiter,
    report: FallbackReport | None = None,
) -> Limiter:
    """Redis-shared limits when the store is Redis, else local ones. Chosen at start-up whether
    or not a key is limited yet, so limits a reload adds are shared too (an unlimited key
    never calls Redis)."""
    if cfg.store.backend != "redis":
        return local
    store = cfg.store
    timeout_ms, share = (
        (cfg.auth.timeout_ms, cfg.auth.fallback_share) if cfg.auth else AUTH_DEFAULTS
    )
    timeout_s = timeout_ms / 1000
    client = connect(
        store.url(environ), cluster=store.cluster, timeout_s=timeout_s, max_connections=SLOTS
    )
    breaker = Breaker(store.breaker_failures, BASE_S, store.backoff_max_s, rng, time.monotonic)
    setup_s = max(store.timeout_ms / 1000, timeout_s)
    return SharedLimiter(
        script(client, GCRA, timeout_s),
        store.key_prefix,
        local,
        share,
        breaker,
        time.monotonic,
        queue_s=max(QUEUE_S, 10 * timeout_s),
        report=report,
        warm=lambda: warm(client, SLOTS, (GCRA,), setup_s),
        close=lambda: close(client, setup_s),
    )
