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
from gateway.modelregistry.merge import resolve
from gateway.modelregistry.view import RegistryView
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
    source: GatewayConfig | None = None  # the file's config (`config` has the registry merged)
    view: RegistryView | None = None  # the model registry's view merged into `config`
    cors: CorsPolicy | None = None  # None: CORS off (no header sent, preflights not answered)

    @classmethod
    def build(
        cls,
        cfg: GatewayConfig,
        metrics: Metrics,
        environ: Mapping[str, str],
        overrides: Overrides | None = None,
        view: RegistryView | None = None,
    ) -> Runtime:
        """The snapshot for the file config `cfg` with the registry's `view` merged in
        (`gateway.modelregistry.merge.resolve`, which raises `ConfigError` on a view that cannot
        be routed) and the shared control `overrides` layered over it
        (`gateway.runtime.overrides.layered`; `config` stays the merged file's)."""
        effective = resolve(cfg, view, environ)
        revision = hashlib.sha256(effective.model_dump_json().encode()).hexdigest()[:12]
        overrides = dict(overrides or {})
        routed, canary_weights = layered(effective, overrides)
        registry = Registry.build(routed, environ, revision, canary_weights)
        keys = KeyTable(cfg.auth)
        cors = CorsPolicy.build(cfg.cors)
        return cls(
            effective, registry, cfg.limits, metrics, revision, keys, overrides, cfg, view, cors
        )

    @property
    def file_config(self) -> GatewayConfig:
        """The config as the file says it (before the registry's versions are merged in)."""
        return self.source or self.config

    def rebuilt(
        self,
        environ: Mapping[str, str],
        *,
        cfg: GatewayConfig | None = None,
        overrides: Overrides | None = None,
        view: RegistryView | None = None,
    ) -> Runtime:
        """This snapshot with a new file config, overrides or registry view (the rest kept,
        performance routes' learned shares included)."""
        runtime = Runtime.build(
            cfg or self.file_config,
            self.metrics,
            environ,
            self.overrides if overrides is None else overrides,
            self.view if view is None else view,
        )
        runtime.registry.resume(self.registry)
        return runtime
