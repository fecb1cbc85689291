"""The per-config snapshot the data path reads, and the holder that swaps it atomically.

A `Runtime` bundles everything derived from one config (registry, limits, revision) with the
process-wide metrics. Each request reads `Gateway.runtime` once and keeps that snapshot to the
end, so a reload never changes a request in flight.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config import GatewayConfig
from gateway.config.schema import Limits
from gateway.observability import Metrics
from gateway.registry import Registry


@dataclass(frozen=True, slots=True)
class Runtime:
    config: GatewayConfig
    registry: Registry
    limits: Limits
    metrics: Metrics
    revision: str

    @classmethod
    def build(cls, cfg: GatewayConfig, metrics: Metrics, environ: Mapping[str, str]) -> Runtime:
        registry = Registry.build(cfg, environ)
        revision = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:12]
        return cls(cfg, registry, cfg.limits, metrics, revision)
