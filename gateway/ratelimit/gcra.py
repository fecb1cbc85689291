"""Per-key rate limits: requests and tokens per minute, by GCRA (the generic cell rate algorithm).

Each limit keeps one number per key, the theoretical arrival time (TAT). A request costing `c`
cells (1 for requests, its reserved tokens for tokens) with emission interval `T = 60 s / limit`
is admitted if `max(TAT, now) + c·T - now <= 60 s` (a full minute of burst), and then advances
the TAT. The wait until it would fit is the exact `Retry-After`. Tokens are reserved before the
request (`max_tokens`, or an estimate) and reconciled with `usage` afterwards by moving the TAT,
so one long stream cannot overshoot. The same arithmetic runs atomically in Redis (one Lua call)
when replicas share limits; this module is the in-process store and the shared arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.config.schema import RateLimit
from gateway.errors import ClientError
from gateway.exchange import THROTTLED

WINDOW_S = 60.0
DEFAULT_COMPLETION_ESTIMATE = 256  # reserved when a request sets no max_tokens


class RateLimited(ClientError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    outcome = THROTTLED  # not the upstream's 429 (that is `rate_limited`)

    def __init__(
        self, message: str, retry_after: float, headers: list[tuple[bytes, bytes]]
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self._headers = headers

    def headers(self) -> list[tuple[bytes, bytes]]:
        return self._headers


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: float  # seconds until the request would fit (0 when allowed)
    remaining: int  # whole cells left in the window after this request


def gcra(tat: float, now: float, cost: float, limit: int) -> tuple[float, Verdict]:
    """One GCRA step: the new TAT (unchanged when refused) and the verdict."""
    interval = WINDOW_S / limit
    start = max(tat, now)
    new_tat = start + cost * interval
    excess = new_tat - now - WINDOW_S
    if excess > 1e-9:
        return tat, Verdict(False, excess, max(int((WINDOW_S - (start - now)) / interval), 0))
    return new_tat, Verdict(True, 0.0, int((WINDOW_S - (new_tat - now)) / interval))


def output_cap(payload: dict[str, object]) -> int | None:
    """The request's cap on output tokens (max_completion_tokens, max_tokens, the Responses
    API's max_output_tokens), or None: the answer may be any size (open-ended)."""
    wanted = payload.get("max_completion_tokens", payload.get("max_tokens"))
    if wanted is None:
        wanted = payload.get("max_output_tokens")
    return wanted if isinstance(wanted, int) and wanted > 0 else None


def reserve_tokens(payload: dict[str, object], body_bytes: int) -> int:
    """Tokens to reserve: the prompt (≈ bytes / 4) plus the output cap or a default estimate."""
    cap = output_cap(payload)
    return body_bytes // 4 + (DEFAULT_COMPLETION_ESTIMATE if cap is None else cap)


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted request's reservation, settled against its real usage afterwards."""

    key: str
    limit: RateLimit
    reserved: int


class LocalLimiter:
    """Limits kept in this process (the memory store, and the fallback when Redis is down)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._tat: dict[tuple[str, str], float] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def reserve(
        self, key: str, limit: RateLimit, payload: dict[str, object], body_bytes: int
    ) -> Ticket | None:
        return self.reserve_now(key, limit, payload, body_bytes)

    def reserve_now(
        self, key: str, limit: RateLimit, payload: dict[str, object], body_bytes: int
    ) -> Ticket | None:
        """Admit one request for `key`, or raise `RateLimited`; None when `key` is unlimited."""
        if limit.requests_per_minute is None and limit.tokens_per_minute is None:
            return None
        tokens = reserve_tokens(payload, body_bytes)
        now = self._clock()
        steps = {}
        for kind, per_minute, cost in (
            ("requests", limit.requests_per_minute, 1),
            ("tokens", limit.tokens_per_minute, tokens),
        ):
            if per_minute is not None:
                steps[kind] = gcra(self._tat.get((key, kind), 0.0), now, cost, per_minute)
        refused = [v.retry_after for _, v in steps.values() if not v.allowed]
        if refused:
            wait = max(refused)
            headers = _headers(limit, {k: v for k, (_, v) in steps.items()})
            headers.append((b"retry-after", str(max(1, math.ceil(wait))).encode()))
            raise RateLimited(
                f"rate limit exceeded for this API key; retry in {wait:.1f}s", wait, headers
            )
        for kind, (tat, _) in steps.items():
            self._tat[(key, kind)] = tat
        return Ticket(key, limit, tokens)

    def settle(self, ticket: Ticket, used: int) -> None:
        """Replace a token reservation with the tokens used (kept whole if usage is unknown)."""
        per_minute = ticket.limit.tokens_per_minute
        slot = (ticket.key, "tokens")
        if per_minute is None or not used or slot not in self._tat:
            return
        self._tat[slot] += (used - ticket.reserved) * WINDOW_S / per_minute


def _headers(limit: RateLimit, verdicts: dict[str, Verdict]) -> list[tuple[bytes, bytes]]:
    out = []
    for kind, per_minute in (
        ("requests", limit.requests_per_minute),
        ("tokens", limit.tokens_per_minute),
    ):
        if per_minute is not None and kind in verdicts:
            out.append((f"x-ratelimit-limit-{kind}".encode(), str(per_minute).encode()))
            out.append(
                (f"x-ratelimit-remaining-{kind}".encode(), str(verdicts[kind].remaining).encode())
            )
    return out


class Limiter(Protocol):
    """Where limits are kept: this process (`LocalLimiter`) or Redis (`SharedLimiter`)."""

    async def start(self) -> None:
        """Before the first request (the lifespan): open what the limiter needs."""
        ...

    async def stop(self) -> None: ...

    async def reserve(
        self, key: str, limit: RateLimit, payload: dict[str, object], body_bytes: int
    ) -> Ticket | None: ...

    def settle(self, ticket: Ticket, used: int) -> None: ...
