"""Routing policies by name: the table that turns a model's `routing` config into a `Policy`."""

from __future__ import annotations

from collections.abc import Callable

from gateway.config.schema import Model
from gateway.routing.base import Policy, RequestContext, RoutePlan
from gateway.routing.performance import PerformancePolicy, Route
from gateway.routing.weighted import WeightedPolicy

__all__ = ["PerformancePolicy", "Policy", "RequestContext", "RoutePlan", "build_policy"]


def _weighted(model: Model) -> Policy:
    weights = model.routing.weights
    if weights is None:  # the checks guarantee one version, or a 'stable' alias
        stable = model.aliases.get("stable", next(iter(model.versions)))
        weights = {stable: 1.0}
    return WeightedPolicy({vid: weights.get(vid, 0.0) for vid in model.versions})


def _performance(name: str, model: Model) -> Policy:
    return PerformancePolicy(Route.of(name, model))


POLICIES: dict[str, Callable[[str, Model], Policy]] = {
    "weighted": lambda _name, model: _weighted(model),
    "performance": _performance,
}


def build_policy(name: str, model: Model) -> Policy:
    return POLICIES[model.routing.strategy](name, model)
