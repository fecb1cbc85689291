"""Process state: the per-config snapshot the data path reads, and the holder that swaps it.

A `Runtime` bundles everything derived from one config (registry, limits, revision) and the
shared control overrides layered over it (weights, aliases, canary weight) with the process-wide
metrics. Each request reads `Gateway.runtime` once and keeps that snapshot to the
end, so a reload never changes a request in flight. `Gateway` holds what outlives a config:
the forwarder (the pooled upstream client), version health and retry budgets, in-flight requests,
and the readiness and drain flags.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.attempts import PlanRunner
from gateway.auth import KeyTable
from gateway.config import GatewayConfig
from gateway.config.schema import Limits
from gateway.control.overrides import Overrides, layered
from gateway.forward import Forwarder
from gateway.logs import AccessLog
from gateway.observability import Metrics
from gateway.ratelimit import Limiter, LocalLimiter
from gateway.registry import Registry
from gateway.resilience.health import HealthTable

if TYPE_CHECKING:
    from gateway.control.service import Control
    from gateway.live import Live


@dataclass(frozen=True, slots=True)
class Runtime:
    config: GatewayConfig
    registry: Registry
    limits: Limits
    metrics: Metrics
    revision: str
    keys: KeyTable
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        cfg: GatewayConfig,
        metrics: Metrics,
        environ: Mapping[str, str],
        overrides: Overrides | None = None,
    ) -> Runtime:
        """The snapshot for the file config `cfg` with the shared control `overrides` layered
        over it (`gateway.control.overrides.layered`; `config` stays the file's)."""
        revision = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:12]
        overrides = dict(overrides or {})
        routed, canary_weights = layered(cfg, overrides)
        registry = Registry.build(routed, environ, revision, canary_weights)
        return cls(cfg, registry, cfg.limits, metrics, revision, KeyTable(cfg.auth), overrides)


class Gateway:
    """Everything one gateway process shares across requests and config reloads."""

    def __init__(self, runtime: Runtime, forwarder: Forwarder, health: HealthTable) -> None:
        self.runtime = runtime
        self.forwarder = forwarder
        self.health = health
        self.runner = PlanRunner(forwarder, health, runtime.metrics)
        health.on_eject = runtime.metrics.ejected
        health.on_panic = runtime.metrics.panic
        self.ready = False  # the lifespan has opened the upstream client
        self.draining = False  # SIGTERM seen: not ready, still serving
        self.shutting_down = False  # drain deadline passed: in-flight work is being ended
        self.limiter: Limiter = LocalLimiter(time.monotonic)  # create_app may share it via Redis
        log = runtime.config.logging
        self.access = AccessLog(log.access, log.format == "json")
        self.inflight = 0  # client requests in progress (`gateway_inflight` reads it at scrape)
        runtime.metrics.count_inflight = lambda: self.inflight
        self.tasks: set[asyncio.Task[Any]] = set()
        self.live: Live  # set by create_app: live metrics, store sync, performance recompute
        self.control: Control  # set by create_app: shared overrides and the canary controller
        self.swap(runtime)

    def swap(self, runtime: Runtime) -> None:
        """Make `runtime` the one new requests see (atomic: one attribute store)."""
        runtime.metrics.use_registry(runtime.registry, runtime.revision)
        self.runtime = runtime

    def end_inflight(self) -> None:
        """The drain deadline: cancel what is still running (streams end with an error event)."""
        self.shutting_down = True
        for task in list(self.tasks):
            task.cancel()
