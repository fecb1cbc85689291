"""Prometheus series of the model registry (docs/operations.md lists them).

    gateway_registry_up                              1 while the last read of the registry worked
    gateway_registry_last_sync_timestamp_seconds     Unix time of the last good read
    gateway_registry_errors_total{kind}              read | refused | writeback
    gateway_registry_versions{model,state}           registry versions: routable | refused
    gateway_registry_writebacks_total{model,outcome} rollout outcomes written back to the registry

Label values come from the config (model) or closed sets (kind, state, outcome).
"""

from __future__ import annotations

from gateway.observability.exposition import Exposition

ERROR_KINDS = ("read", "refused", "writeback")


class RegistryMetrics:
    def __init__(self, x: Exposition) -> None:
        self.up = x.gauge(
            "gateway_registry_up", "1 while the last read of the model registry worked"
        )
        self.last_sync = x.gauge(
            "gateway_registry_last_sync_timestamp_seconds",
            "Unix time of the last good read of the model registry",
        )
        self.errors = x.counter(
            "gateway_registry_errors_total",
            "Model registry failures: read (unreachable, garbled), refused (an answer that "
            "cannot be routed), writeback (a rollout outcome not written yet)",
            ("kind",),
        )
        self.versions = x.gauge(
            "gateway_registry_versions",
            "Versions read from the model registry, routable or refused",
            ("model", "state"),
        )
        self.writebacks = x.counter(
            "gateway_registry_writebacks_total",
            "Rollout outcomes written back to the model registry",
            ("model", "outcome"),
        )

    def read(self, ok: bool, now: float) -> None:
        """One read of the registry (series appear only once a registry is configured)."""
        self.up.labels().set(1 if ok else 0)
        if ok:
            self.last_sync.labels().set(now)
        else:
            self.errors.labels("read").inc()

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def counts(self, model: str, routable: int, refused: int) -> None:
        self.versions.labels(model, "routable").set(routable)
        self.versions.labels(model, "refused").set(refused)
