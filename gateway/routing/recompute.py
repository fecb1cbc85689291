"""Recomputing performance routes off the request path.

Every `strategy: performance` route gets new weights from the live snapshot once its
`recompute_s` has passed, never per request: `Recomputer.run` ticks at the shortest configured
period (or once a second with none), recomputes what is due and publishes the new weights. It
reads the current routing table and snapshot through the getters it is given, so a reload or
a control change is picked up on the next tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from random import Random

from gateway.infra.clock import SharedClock
from gateway.livestats.window import Snapshot
from gateway.routing.performance import PerformancePolicy
from gateway.routing.table import Registry

log = logging.getLogger("gateway.routing")
IDLE_TICK_S = 1.0
MIN_TICK_S = 0.05


class Recomputer:
    def __init__(
        self,
        registry: Callable[[], Registry],
        snapshot: Callable[[], Snapshot],
        clock: SharedClock,
        rng: Random,
        publish: Callable[[Registry], None],
    ) -> None:
        self._registry = registry
        self._snapshot = snapshot
        self._clock = clock
        self._rng = rng
        self._publish = publish

    def recompute(self) -> None:
        """Recompute every performance route that is due, and publish the new weights."""
        registry = self._registry()
        monotonic, now = self._clock.monotonic(), self._clock.now()
        changed = False
        for model in registry.models.values():
            policy = model.policy
            if isinstance(policy, PerformancePolicy) and policy.due(monotonic):
                policy.update(self._snapshot(), now, monotonic, self._rng)
                changed = True
        if changed:
            self._publish(registry)

    def tick_s(self) -> float:
        periods = [
            m.policy.recompute_s
            for m in self._registry().models.values()
            if isinstance(m.policy, PerformancePolicy)
        ]
        return max(min(periods, default=IDLE_TICK_S), MIN_TICK_S)

    async def run(self) -> None:
        """Recompute on every tick until cancelled."""
        while True:
            try:
                self.recompute()
            except Exception:
                log.exception("recomputing routing weights failed")
            await asyncio.sleep(self.tick_s())
