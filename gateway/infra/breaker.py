"""A circuit breaker with jittered exponential backoff, for calls to the shared store.

Closed: calls go through; `threshold` consecutive failures open it. Open: no calls until a retry
time of `base_s · 2^k` (capped at `max_s`) times a random factor in [0.5, 1.5), so replicas that
lost Redis together do not come back in step; then one probe decides (success closes, failure
re-opens with the next, longer delay). Time and randomness are injected.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

BASE_S = 0.1  # the first open period before jitter; it doubles per failed probe


class Breaker:
    def __init__(
        self,
        threshold: int,
        base_s: float,
        max_s: float,
        rng: Random,
        monotonic: Callable[[], float],
    ) -> None:
        self._threshold = threshold
        self._base_s = base_s
        self._max_s = max_s
        self._rng = rng
        self._monotonic = monotonic
        self._failures = 0
        self._opens = 0
        self.closed = True
        self.retry_at = 0.0

    def ready(self) -> bool:
        """May a call (or, when open, a probe) be made now?"""
        return self.closed or self._monotonic() >= self.retry_at

    def success(self) -> None:
        self._failures = self._opens = 0
        self.closed = True

    def failure(self) -> None:
        self._failures += 1
        if not self.closed or self._failures >= self._threshold:
            self.trip()

    def trip(self) -> None:
        """Open now; the next probe waits a jittered, growing delay."""
        delay = min(self._max_s, self._base_s * 2.0**self._opens)
        self.retry_at = self._monotonic() + delay * (0.5 + self._rng.random())
        self._opens += 1
        self.closed = False
