"""`strategy: performance`: live metrics choose among versions an operator marks interchangeable.

Method (an indifference-zone variant of Thompson sampling, recomputed periodically):

1. Evidence: per version, exponentially decayed counts: judged attempts and those without a
   version failure, and (for the latency/TTFT objective) successes and the fast ones among
   them — Beta posteriors per component, see `evidence.py`.
2. Trust: a version with fewer than `min_samples` judged attempts in the stats window keeps its
   current share (no decision without evidence); with fewer than two trusted versions, nothing
   moves.
3. Targets: P(near best) — the posterior probability that a version is within tolerance of the
   best on every component of the objective (see `evidence.py`) — decides each trusted
   version's raw weight: min(1, P / 0.2). A version counts as equivalent to the best unless the
   evidence gives it less than a 20 % chance of being near it (so sampling noise does not move
   traffic between equal versions); below that its weight shrinks in proportion. Shares are
   proportional to the raw weights, lifted to the `min_share` floor and cut at the ceilings
   (`routing.weights`, percent). Equivalent versions share equally; a slow or failing one drops
   to its floor, where it keeps being sampled.
4. Slow start: a version below its fair share (equal split under the ceilings) may gain at most
   fair × elapsed / `slow_start_s` per recompute, so a recovered or new version ramps back
   linearly (never overshooting its target) while losses apply at once. Capacity a ramping
   version cannot take yet goes to the others in proportion to their targets.

`next_weights` is a pure function of (route, snapshot buckets, previous weights, now, elapsed,
rng); `PerformancePolicy` holds the current table, recomputed every `recompute_s` by the live
loop, and `plan()` is a weighted draw over it (the same per-request cost as weighted routing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

from gateway.config.routes import Model, Performance
from gateway.livestats.window import BucketStats, Snapshot
from gateway.routing.base import RequestContext, RoutePlan
from gateway.routing.evidence import (
    decayed,
    mean_reward,
    near_best,
    objective,
    posteriors,
    thresholds,
)
from gateway.routing.shares import fair_shares, waterfill
from gateway.routing.weighted import WeightedPolicy

MAX_ELAPSED_RECOMPUTES = 5  # a stalled loop may not make a ramp jump by more than this
EQUIVALENT_P = 0.2  # P(near best) from which a version counts as equivalent to the best


@dataclass(frozen=True, slots=True)
class Route:
    """One model's performance route, from config."""

    model: str
    versions: tuple[str, ...]  # every version (zero weight outside the pool)
    pool: tuple[str, ...]  # interchangeable versions with a positive ceiling
    ceilings: Mapping[str, float]  # 0-1
    settings: Performance
    fair: Mapping[str, float]

    @classmethod
    def of(cls, name: str, model: Model) -> Route:
        settings = model.routing.performance or Performance()
        limits = model.routing.weights or {}
        ceilings = {v: limits.get(v, 100.0) / 100.0 for v in model.versions}
        pool = tuple(v for v in (settings.versions or model.versions) if ceilings[v] > 0)
        return cls(
            name, tuple(model.versions), pool, ceilings, settings, fair_shares(pool, ceilings)
        )


@dataclass(frozen=True, slots=True)
class Decision:
    weights: dict[str, float]
    details: dict[str, dict[str, Any]]  # per version: what the decision was based on


def next_weights(
    route: Route,
    buckets: Mapping[str, Sequence[BucketStats]],
    previous: Mapping[str, float] | None,
    now: float,
    elapsed_s: float,
    bucket_s: int,
    rng: Random,
) -> Decision:
    s = route.settings
    prev = _previous(route, previous)
    evidence = {v: decayed(buckets.get(v, ()), now, bucket_s, s.half_life_s) for v in route.pool}
    trusted = {v: e for v, e in evidence.items() if e.samples >= s.min_samples}
    details: dict[str, dict[str, Any]] = {
        v: {"trusted": v in trusted, "decayed_samples": round(e.judged, 1)}
        for v, e in evidence.items()
    }
    targets = dict(prev)
    if len(trusted) >= 2:
        fast = thresholds(s, trusted)
        goal = objective(s)
        beliefs = posteriors(trusted, goal, fast)
        chance = near_best(beliefs, goal, s.draws, rng)
        held = {v: prev[v] for v in route.pool if v not in trusted}
        raw = {v: min(1.0, p / EQUIVALENT_P) for v, p in chance.items()}
        floors = dict.fromkeys(raw, s.min_share)
        targets = {**held, **waterfill(1.0 - sum(held.values()), raw, floors, route.ceilings)}
        for v, p in chance.items():
            details[v].update(p_near_best=p, reward=mean_reward(beliefs[v], goal))
        shown = [ms if math.isfinite(ms) else None for ms in fast]  # JSON has no infinity
        for v in details:
            details[v].update(fast_ms=shown[0], fast_ttft_ms=shown[1])
    weights = _slow_start(route, prev, targets, elapsed_s)
    return Decision({v: weights.get(v, 0.0) for v in route.versions}, details)


def _previous(route: Route, previous: Mapping[str, float] | None) -> dict[str, float]:
    """Last shares over the pool: fair at cold start; a version new to the pool starts at its
    floor (then ramps up through slow start)."""
    if not previous:
        return dict(route.fair)
    floor = route.settings.min_share
    known = {v: previous[v] for v in route.pool if previous.get(v, 0.0) > 0}
    if not known:
        return dict(route.fair)
    newcomers = {v: floor for v in route.pool if v not in known}
    scale = (1.0 - sum(newcomers.values())) / sum(known.values())
    return {**{v: w * scale for v, w in known.items()}, **newcomers}


def _slow_start(
    route: Route, prev: Mapping[str, float], targets: Mapping[str, float], elapsed_s: float
) -> dict[str, float]:
    s = route.settings
    elapsed = min(elapsed_s, s.recompute_s * MAX_ELAPSED_RECOMPUTES)
    capped: dict[str, float] = {}
    if s.slow_start_s > 0:
        for v in route.pool:
            below_fair = prev[v] < route.fair[v]
            limit = prev[v] + route.fair[v] * elapsed / s.slow_start_s
            if below_fair and targets[v] > limit:
                capped[v] = limit
    if not capped:
        return dict(targets)
    rest = {v: targets[v] for v in route.pool if v not in capped}
    if not rest:
        return dict(targets)
    floors = dict.fromkeys(rest, s.min_share)
    return {**capped, **waterfill(1.0 - sum(capped.values()), rest, floors, route.ceilings)}


class PerformancePolicy:
    """The current weights table of one performance route, swapped whole on each recompute."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self._set({v: route.fair.get(v, 0.0) for v in route.versions})
        self._last: float | None = None
        self.details: dict[str, dict[str, Any]] = {}

    def resume(self, old: PerformancePolicy) -> None:
        """Go on from `old`'s shares and schedule: a reload or control change rebuilds the
        policy, and must not hand a drained version fair share until the next recompute. A
        version new to the pool starts at its floor (see `_previous`); changed ceilings apply
        at the next recompute, at most `recompute_s` later."""
        shares = _previous(self.route, old._weights)
        self._set({v: shares.get(v, 0.0) for v in self.route.versions})
        self._last = old._last
        self.details = old.details

    @property
    def recompute_s(self) -> float:
        return self.route.settings.recompute_s

    def plan(self, ctx: RequestContext, rng: Random) -> RoutePlan:
        return self._table.plan(ctx, rng)

    def session(self, ctx: RequestContext) -> str | None:
        return None  # not a canary split: no evidence unit

    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    def due(self, monotonic: float) -> bool:
        return self._last is None or monotonic - self._last >= self.recompute_s

    def update(self, snapshot: Snapshot, now: float, monotonic: float, rng: Random) -> None:
        """Recompute the table from `snapshot` (`now` on the shared clock)."""
        elapsed = self.recompute_s if self._last is None else monotonic - self._last
        self._last = monotonic
        buckets = {v: snapshot.buckets(self.route.model, v) for v in self.route.pool}
        decision = next_weights(
            self.route, buckets, self._weights, now, elapsed, snapshot.bucket_s, rng
        )
        self._set(decision.weights)
        self.details = decision.details

    def _set(self, weights: dict[str, float]) -> None:
        self._weights = weights
        self._table = WeightedPolicy(weights, reason="performance")
