"""Routing policies by name: the table that turns a model's `routing` config into a `Policy`."""

from __future__ import annotations

from collections.abc import Callable

from gateway.config.schema import Model
from gateway.routing.base import Policy, RequestContext, RoutePlan
from gateway.routing.weighted import WeightedPolicy

__all__ = ["Policy", "RequestContext", "RoutePlan", "build_policy"]


def _weighted(model: Model) -> Policy:
    weights = model.routing.weights
    if weights is None:  # the checks guarantee one version, or a 'stable' alias
        stable = model.aliases.get("stable", next(iter(model.versions)))
        weights = {stable: 1.0}
    return WeightedPolicy({vid: weights.get(vid, 0.0) for vid in model.versions})


POLICIES: dict[str, Callable[[Model], Policy]] = {"weighted": _weighted}


def build_policy(model: Model) -> Policy:
    return POLICIES[model.routing.strategy](model)
