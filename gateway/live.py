"""A process's live state: recording attempts, the background loops, and the stats view.

Owns the `StoreSync` (batch, flush, refresh), the recompute loop of performance routes (every
`recompute_s`, from the current snapshot, never per request) and the JSON of
`GET /admin/models/{model}/stats`. Started and stopped by the app's lifespan; `record` is what
the request path calls when a request ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from random import Random
from typing import Any

from gateway.exchange import Exchange
from gateway.routing import PerformancePolicy
from gateway.runtime import Runtime
from gateway.store import StoreSync
from gateway.store.base import ANALYSIS_TAG

log = logging.getLogger("gateway.live")
IDLE_TICK_S = 1.0
MIN_TICK_S = 0.05


class Live:
    def __init__(self, sync: StoreSync, runtime: Callable[[], Runtime], rng: Random) -> None:
        self.sync = sync
        self._runtime = runtime
        self._rng = rng
        self._tasks: list[asyncio.Task[None]] = []

    def record(self, ex: Exchange) -> None:
        """Queue the request's attempts; canary-split requests also feed the analysis series
        (pinned and rule-routed requests have other reasons and never do)."""
        if ex.model is not None and ex.attempts:
            tag = ANALYSIS_TAG if ex.routing_reason == "canary" else ""
            self.sync.record(ex.model, ex.attempts, tag)

    async def start(self) -> None:
        await self.sync.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.sync.run()), loop.create_task(self._recompute_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.sync.stop()

    def recompute(self) -> None:
        """Recompute every performance route that is due, and publish the new weights."""
        rt = self._runtime()
        clock = self.sync.clock
        monotonic, now = clock.monotonic(), clock.now()
        changed = False
        for model in rt.registry.models.values():
            policy = model.policy
            if isinstance(policy, PerformancePolicy) and policy.due(monotonic):
                policy.update(self.sync.snapshot, now, monotonic, self._rng)
                changed = True
        if changed:
            rt.metrics.publish_weights(rt.registry)

    def _tick(self) -> float:
        periods = [
            m.policy.recompute_s
            for m in self._runtime().registry.models.values()
            if isinstance(m.policy, PerformancePolicy)
        ]
        return max(min(periods, default=IDLE_TICK_S), MIN_TICK_S)

    async def _recompute_loop(self) -> None:
        while True:
            try:
                self.recompute()
            except Exception:
                log.exception("live: recomputing routing weights failed")
            await asyncio.sleep(self._tick())

    def stats(self, name: str) -> dict[str, Any]:
        """`GET /admin/models/{model}/stats`: per-version numbers over the window, and weights."""
        rt = self._runtime()
        model = rt.registry.model(name)
        snapshot = self.sync.snapshot
        weights = model.policy.weights()
        details = model.policy.details if isinstance(model.policy, PerformancePolicy) else {}
        versions = {}
        for vid in model.versions:
            entry = snapshot.window(name, vid).describe()
            entry["weight"] = weights.get(vid, 0.0)
            if vid in details:
                entry["routing"] = details[vid]
            versions[vid] = entry
        return {
            "model": name,
            "strategy": rt.config.models[name].routing.strategy,
            "versions": versions,
            "store": self.health(),
        }

    def health(self) -> dict[str, Any]:
        sync = self.sync
        return {
            "backend": sync.settings.backend,
            "up": sync.shared_up,
            "source": sync.snapshot.source,
            "snapshot_age_s": sync.snapshot_age(),
            "dropped": dict(sync.dropped),
            "errors": dict(sync.errors),
            "pid": os.getpid(),
        }
