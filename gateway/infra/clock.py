"""The shared time line that bucket starts are cut from, advanced by this process's monotonic clock.

Bucket starts must mean the same instant in every replica, so wall clocks of different hosts are
never compared: each process keeps `now() = monotonic() + offset`, where the offset is taken from
Redis `TIME` (corrected by half the round trip) on every successful read. Until Redis has answered,
and with the memory store, the offset comes from this host's wall clock once at start. Between
syncs time only moves with the monotonic clock, so a wall-clock step never moves it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

RESYNC_S = 0.05  # ignore offset changes smaller than this (round-trip noise)


class SharedClock:
    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.monotonic = monotonic
        self._offset = wall() - monotonic()

    def now(self) -> float:
        return self.monotonic() + self._offset

    def sync(self, server_time: float, sent_at: float, received_at: float) -> None:
        """Adopt the store's clock, read between monotonic `sent_at` and `received_at`."""
        offset = server_time - (sent_at + received_at) / 2
        if abs(offset - self._offset) > RESYNC_S:
            self._offset = offset
