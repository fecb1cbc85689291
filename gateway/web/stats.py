"""The live stats answer of `GET /admin/models/{model}/stats`: per-version numbers over the
window, the routing weight each version gets now, and the live store's health."""

from __future__ import annotations

import os
from typing import Any

from gateway.livestats import StoreSync
from gateway.routing import PerformancePolicy
from gateway.runtime.snapshot import Runtime


def version_stats(rt: Runtime, sync: StoreSync, name: str) -> dict[str, Any]:
    """Per-version numbers over the window, and weights (404 for an unknown model)."""
    model = rt.registry.model(name)
    snapshot = sync.snapshot
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
        "store": store_health(sync),
    }


def store_health(sync: StoreSync) -> dict[str, Any]:
    """Which store backs the live numbers, whether it is reachable, and what was lost."""
    return {
        "backend": sync.settings.backend,
        "up": sync.shared_up,
        "source": sync.snapshot.source,
        "snapshot_age_s": sync.snapshot_age(),
        "dropped": dict(sync.dropped),
        "errors": dict(sync.errors),
        "pid": os.getpid(),
    }
