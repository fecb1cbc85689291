"""What the shared rate limiter tells operators when it judges requests locally.

A request is judged by the local fallback limiter (`auth.fallback_share` of each limit) for one
of three reasons, each counted in `gateway_ratelimit_fallback_total{reason}`:

- `breaker_open`: Redis failed `store.breaker_failures` calls in a row; every limited request is
  judged locally until a probe succeeds. The switch and the switch back are each logged once
  (`ratelimit_fallback_on` / `ratelimit_fallback_off`) and the state is the gauge
  `gateway_ratelimit_breaker_open`.
- `store_error`: this request's own Redis call failed or timed out (the breaker is still closed).
- `queue`: this request waited longer than the queue budget for one of the limiter's
  connections — the gateway's own queueing, which never counts against Redis.

The last two are logged as `ratelimit_fallback` at most once a second, with how many requests
were judged locally since the previous line, so a burst cannot flood the log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

LOG_EVERY_S = 1.0
REASONS = ("breaker_open", "store_error", "queue")
log = logging.getLogger("gateway.ratelimit")


class FallbackReport:
    def __init__(
        self,
        on_fallback: Callable[[str], None],
        on_breaker: Callable[[bool], None],
        clock: Callable[[], float],
    ) -> None:
        self._on_fallback = on_fallback
        self._on_breaker = on_breaker
        self._clock = clock
        self.total = 0  # requests judged locally, every reason
        self.breaker_open = False
        self._logged_at = -math.inf
        self._unlogged = 0

    def fallback(self, reason: str) -> None:
        """One request judged locally, for `reason` (one of `REASONS`)."""
        self.total += 1
        self._on_fallback(reason)
        if reason == "breaker_open":
            return  # the switch itself was logged
        self._unlogged += 1
        now = self._clock()
        if now - self._logged_at >= LOG_EVERY_S:
            _event(
                logging.WARNING,
                "ratelimit_fallback",
                "rate limits judged locally: redis did not answer in time (or the limiter's "
                "connections were all busy)",
                reason=reason,
                requests=self._unlogged,
            )
            self._logged_at, self._unlogged = now, 0

    def breaker(self, is_open: bool) -> None:
        """The breaker's state after a call; logs and exports each change once."""
        if is_open == self.breaker_open:
            return
        self.breaker_open = is_open
        self._on_breaker(is_open)
        if is_open:
            _event(
                logging.WARNING,
                "ratelimit_fallback_on",
                "redis unavailable: every replica now enforces auth.fallback_share of each "
                "limit on its own",
            )
        else:
            _event(logging.INFO, "ratelimit_fallback_off", "redis back: limits shared again")


def _event(level: int, name: str, message: str, **fields: object) -> None:
    log.log(level, message, extra={"fields": {"event": name, **fields}})
