"""The per-config snapshot the data path reads: `Runtime`.

A `Runtime` bundles everything derived from one config (routing table, limits, client keys,
revision, CORS policy) and the shared control overrides layered over it (weights, aliases,
canary weight), with the process-wide metrics. Each request reads the current `Runtime` once
and keeps that snapshot to the end, so a reload never changes a request in flight.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.auth import KeyTable
from gateway.config import GatewayConfig
from gateway.config.schema import Limits
from gateway.observability.metrics import Metrics
from gateway.routing.table import Registry
from gateway.runtime.cors import CorsPolicy
from gateway.runtime.overrides import Overrides, layered


@dataclass(frozen=True, slots=True)
class Runtime:
    config: GatewayConfig
    registry: Registry
    limits: Limits
    metrics: Metrics
    revision: str
    keys: KeyTable
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    cors: CorsPolicy | None = None  # None: CORS off (no header sent, preflights not answered)

    @classmethod
    def build(
        cls,
        cfg: GatewayConfig,
        metrics: Metrics,
        environ: Mapping[str, str],
        overrides: Overrides | None = None,
    ) -> Runtime:
        """The snapshot for the file config `cfg` with the shared control `overrides` layered
        over it (`gateway.runtime.overrides.layered`; `config` stays the file's)."""
        revision = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:12]
        overrides = dict(overrides or {})
        routed, canary_weights = layered(cfg, overrides)
        registry = Registry.build(routed, environ, revision, canary_weights)
        keys = KeyTable(cfg.auth)
        cors = CorsPolicy.build(cfg.cors)
        return cls(cfg, registry, cfg.limits, metrics, revision, keys, overrides, cors)
