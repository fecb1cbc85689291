"""Weighted random choice among a model's versions.

The first version is drawn with probability weight/total: one uniform point — from the injected
RNG, or fixed by the request's sticky key — and a bisect over precomputed cumulative weights, in
the order the weights are given; the other versions of positive weight follow, heaviest first,
as the fallback order (`spill=False`: none follow). A version of weight 0 is idle: never drawn
and never a fallback (only the model's explicit `fallback` list can name it).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from itertools import accumulate
from random import Random

from gateway.routing.base import RequestContext, RoutePlan
from gateway.routing.sticky import KeyOf, point


class WeightedPolicy:
    __slots__ = (
        "_cumulative",
        "_ids",
        "_key_of",
        "_plans",
        "_reason",
        "_salt",
        "_shares",
        "_total",
    )

    def __init__(
        self,
        weights: Mapping[str, float],
        key_of: KeyOf | None = None,
        salt: bytes = b"",
        reason: str = "weighted",
        spill: bool = True,
    ) -> None:
        live = [(vid, w) for vid, w in weights.items() if w > 0]
        if not live:
            raise ValueError("at least one version needs a positive weight")
        self._ids = tuple(vid for vid, _ in live)
        self._cumulative = tuple(accumulate(w for _, w in live))
        self._total = self._cumulative[-1]
        self._shares = {vid: weights[vid] / self._total for vid in weights}
        by_weight = sorted(self._ids, key=lambda v: (-weights[v], v)) if spill else []
        self._plans = tuple(
            RoutePlan((vid, *(o for o in by_weight if o != vid)), reason) for vid in self._ids
        )
        self._key_of, self._salt, self._reason = key_of, salt, reason

    def plan(self, ctx: RequestContext, rng: Random) -> RoutePlan:
        if len(self._plans) == 1:
            return self._plans[0]
        key = self._key_of(ctx) if self._key_of is not None else None
        u = point(self._salt, key) if key is not None else rng.random()
        index = bisect_right(self._cumulative, u * self._total)
        return self._plans[min(index, len(self._plans) - 1)]

    def session(self, ctx: RequestContext) -> str | None:
        """The request's sticky session as a short hash, "" without a key, None when the
        split is not sticky (what canary evidence counts as its unit)."""
        if self._key_of is None:
            return None
        key = self._key_of(ctx)
        return "" if key is None else f"{point(self._salt, key):.12f}"[2:]

    def weights(self) -> dict[str, float]:
        return dict(self._shares)
