"""Routing policies by name: the table that turns a model's `routing` config into a `Policy`."""

from __future__ import annotations

from collections.abc import Callable

from gateway.config.routes import Model
from gateway.routing.base import Policy, RequestContext, RoutePlan
from gateway.routing.performance import PerformancePolicy, Route
from gateway.routing.rules import RuledPolicy
from gateway.routing.sticky import key_getter
from gateway.routing.weighted import WeightedPolicy

__all__ = ["PerformancePolicy", "Policy", "RequestContext", "RoutePlan", "build_policy"]


def _weighted(name: str, model: Model, canary_weight: float | None) -> Policy:
    weights = model.routing.weights
    if weights is None:  # the checks guarantee one version, or a 'stable' alias
        stable = model.aliases.get("stable", next(iter(model.versions)))
        weights = {stable: 1.0}
    key_of = key_getter(model.routing.sticky_key)
    ordered = {vid: weights.get(vid, 0.0) for vid in model.versions}
    return WeightedPolicy(ordered, key_of, name.encode())


def _canary(name: str, model: Model, canary_weight: float | None) -> Policy:
    """Two arms, candidate first (so a sticky key only ever moves into the candidate). A failed
    attempt is not retried on the other arm unless `retry_across_arms` says so: the evidence of
    each arm stays its own, and a version of weight 0 (rolled back, promoted over) stays idle."""
    canary = model.routing.canary
    assert canary is not None  # the checks guarantee it
    weight = canary.steps[0].weight if canary_weight is None else canary_weight
    baseline, candidate = canary.arms()
    arms = {candidate: weight, baseline: 100.0 - weight}
    arms.update({vid: 0.0 for vid in model.versions if vid not in arms})
    salt = f"{name}:{candidate}".encode()  # a new rollout reshuffles keys
    reason = "canary" if 0.0 < weight < 100.0 else "weighted"  # ended: no longer analysed
    key_of = key_getter(model.routing.sticky_key)
    return WeightedPolicy(arms, key_of, salt, reason=reason, spill=canary.retry_across_arms)


def _performance(name: str, model: Model, canary_weight: float | None) -> Policy:
    return PerformancePolicy(Route.of(name, model))


POLICIES: dict[str, Callable[[str, Model, float | None], Policy]] = {
    "weighted": _weighted,
    "canary": _canary,
    "performance": _performance,
}


def build_policy(name: str, model: Model, canary_weight: float | None = None) -> Policy:
    """The model's policy; `canary_weight` is the canary's current weight (percent), if any."""
    policy = POLICIES[model.routing.strategy](name, model, canary_weight)
    if model.routing.rules:
        policy = RuledPolicy(model.routing.rules, policy, tuple(model.versions))
    return policy
