"""Leases of rate-limit credits: what one replica may admit for a key without asking Redis.

When Redis admits a request far from the key's limit, the same atomic call also charges the
key for a few more *like* requests (each 1 request and the same reserved tokens, as if they had
arrived now) and hands them to the replica as a lease. While the lease lasts and a request fits
it, the replica admits it locally: no round trip. A request that does not fit goes to Redis as
before, which is exact. The lease size, per limit, is

    extra = min(floor(remaining / LEASE_DIVISOR), limit // LEASE_FRACTION)

where `remaining` is what Redis has left after the request itself; for tokens it is then counted
in like requests (`extra // reserved`), and the lease is the smaller of the two counts.

- `LEASE_DIVISOR = 64`: a lease takes at most 1/64 of the headroom, so it shrinks as the key
  nears its limit and is 0 once fewer than 64 requests (or 64 like requests' tokens) are left:
  near the limit every request goes to Redis, exactly as without leases, and 429s always come
  from Redis with an exact `Retry-After`.
- `LEASE_FRACTION = 1000`: one lease holds at most 0.1 % of a limit (a 60,000 rpm key: 60
  requests; keys under 1,000 rpm, or under 1,000 reserved tokens × 1,000 tpm, get no lease).
- `LEASE_S = 1.0`: a lease is usable for one second of the replica's monotonic clock; short, so
  the replica's view never drifts far from Redis's.

Unused credits (a lease that expired, or one replaced because a request did not fit it) are
handed back: the key's next Redis call moves the TAT back by them, in the same script that
carries the token settle. Accuracy: credits are charged in Redis before they are used, so the
only error is the credits a replica holds. At any moment admissions differ from exact GCRA by at
most one lease per replica per key — fewer admitted while another replica holds unused credits,
or more when credits charged before the key's bucket refilled are used or handed back after —
so at most `replicas × 0.1 %` of the limit either way (1 % at 10 replicas, workers counted as
replicas), and the error does not accumulate. Dropping unused credits instead would err on the
safe side once but pile up: a quiet replica would waste up to a lease a second.

Headers: the lease path only admits (admitted responses carry no gateway `x-ratelimit-*`
headers); every 429 comes from Redis, whose `x-ratelimit-remaining-*` count credits leased to
replicas as used, so they read low by at most the leases held (one per replica).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.schema import RateLimit
from gateway.ratelimit.gcra import WINDOW_S

LEASE_DIVISOR = 64
LEASE_FRACTION = 1000
LEASE_S = 1.0

Refund = tuple[float, float]  # TAT corrections in ms: (requests, tokens)
NO_REFUND: Refund = (0.0, 0.0)


@dataclass(slots=True)
class Lease:
    limit: RateLimit  # the limit it was granted under (a reload voids it)
    requests: int  # request credits left
    tokens: int  # token credits left
    expires: float  # monotonic seconds


def lease_caps(limit: RateLimit) -> tuple[int, int]:
    """The most credits one lease may hold: (requests, tokens)."""
    return (
        (limit.requests_per_minute or 0) // LEASE_FRACTION,
        (limit.tokens_per_minute or 0) // LEASE_FRACTION,
    )


def add(a: Refund, b: Refund) -> Refund:
    return (a[0] + b[0], a[1] + b[1])


class Leases:
    """The credits this replica holds, per key (at most one lease per key)."""

    def __init__(self) -> None:
        self._held: dict[str, Lease] = {}

    def take(self, key: str, limit: RateLimit, tokens: int, now: float) -> bool:
        """Admit one request of `tokens` reserved tokens from the key's lease, if it fits."""
        lease = self._held.get(key)
        if lease is None or now >= lease.expires or lease.limit != limit:
            return False
        need_requests = 1 if limit.requests_per_minute is not None else 0
        need_tokens = tokens if limit.tokens_per_minute is not None else 0
        if lease.requests < need_requests or lease.tokens < need_tokens:
            return False
        lease.requests -= need_requests
        lease.tokens -= need_tokens
        return True

    def grant(self, key: str, limit: RateLimit, count: int, tokens: int, now: float) -> Refund:
        """Hold `count` like requests until `now + LEASE_S`; hand back any lease it replaces."""
        refund = self.release(key)
        if count > 0:
            self._held[key] = Lease(limit, count, count * tokens, now + LEASE_S)
        return refund

    def release(self, key: str) -> Refund:
        """Drop the key's lease; the TAT corrections that hand its unused credits back."""
        lease = self._held.pop(key, None)
        if lease is None:
            return NO_REFUND
        return (
            -_ms(lease.requests, lease.limit.requests_per_minute),
            -_ms(lease.tokens, lease.limit.tokens_per_minute),
        )


def _ms(cells: int, per_minute: int | None) -> float:
    return 0.0 if per_minute is None or not cells else cells * WINDOW_S * 1000 / per_minute
