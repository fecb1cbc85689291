"""Weighted random choice among a model's versions.

The first version is drawn with probability weight/total from the injected RNG (one uniform draw
and a bisect over precomputed cumulative weights); the others follow, heaviest first, as the
fallback order. Versions of weight 0 are never drawn but may serve as fallbacks.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from itertools import accumulate
from random import Random

from gateway.routing.base import RequestContext, RoutePlan


class WeightedPolicy:
    __slots__ = ("_cumulative", "_ids", "_plans", "_shares", "_total")

    def __init__(self, weights: Mapping[str, float], reason: str = "weighted") -> None:
        live = [(vid, w) for vid, w in weights.items() if w > 0]
        if not live:
            raise ValueError("at least one version needs a positive weight")
        self._ids = tuple(vid for vid, _ in live)
        self._cumulative = tuple(accumulate(w for _, w in live))
        self._total = self._cumulative[-1]
        self._shares = {vid: weights[vid] / self._total for vid in weights}
        by_weight = sorted(weights, key=lambda v: (-weights[v], v))
        self._plans = tuple(
            RoutePlan((vid, *(o for o in by_weight if o != vid)), reason) for vid in self._ids
        )

    def plan(self, ctx: RequestContext, rng: Random) -> RoutePlan:
        if len(self._plans) == 1:
            return self._plans[0]
        index = bisect_right(self._cumulative, rng.random() * self._total)
        return self._plans[min(index, len(self._plans) - 1)]

    def weights(self) -> dict[str, float]:
        return dict(self._shares)
