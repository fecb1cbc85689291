"""Log-spaced latency histograms: the bucket layout, and percentiles estimated from counts.

Bucket 0 holds values below `MIN_MS`; bucket i ≥ 1 holds [MIN_MS·2^((i-1)/8), MIN_MS·2^(i/8)),
eight buckets per doubling (each about 9 % wide), up to `MAX_INDEX` (~2 h), which also takes
everything larger. A percentile is found by walking the cumulative counts to the bucket that holds
the wanted rank and interpolating geometrically inside it, so the estimate always lies in the
bucket of the exact order statistic: within one bucket (≤ 9 %) of the exact percentile.
Counts may be fractional (exponentially decayed merges).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

MIN_MS = 0.25
STEPS_PER_DOUBLING = 8
MAX_INDEX = 200
GROWTH = 2.0 ** (1.0 / STEPS_PER_DOUBLING)


def bucket_of(ms: float) -> int:
    """The bucket index of a duration in milliseconds."""
    if not ms >= MIN_MS:  # also NaN
        return 0
    index = int(math.log2(ms / MIN_MS) * STEPS_PER_DOUBLING) + 1
    return index if index < MAX_INDEX else MAX_INDEX


def bounds(index: int) -> tuple[float, float]:
    """[lower, upper) of bucket `index` in milliseconds."""
    if index <= 0:
        return 0.0, MIN_MS
    return MIN_MS * GROWTH ** (index - 1), MIN_MS * GROWTH**index


class Histogram:
    """Sparse bucket counts (index → count)."""

    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[int, float] | None = None) -> None:
        self.counts: dict[int, float] = dict(counts) if counts else {}

    @classmethod
    def of(cls, values_ms: Iterable[float]) -> Histogram:
        hist = cls()
        for value in values_ms:
            hist.add(bucket_of(value))
        return hist

    def add(self, index: int, count: float = 1.0) -> None:
        self.counts[index] = self.counts.get(index, 0.0) + count

    @classmethod
    def merged(cls, hists: Sequence[Histogram]) -> Histogram:
        """The unweighted sum of `hists` (what `merge` into an empty one gives), in one pass."""
        merged = cls()
        if not hists:
            return merged
        counts = merged.counts = {index: 0.0 + count for index, count in hists[0].counts.items()}
        get = counts.get
        for hist in hists[1:]:
            for index, count in hist.counts.items():
                counts[index] = get(index, 0.0) + count
        return merged

    def merge(self, other: Histogram, weight: float = 1.0) -> None:
        counts, get = self.counts, self.counts.get
        for index, count in other.counts.items():
            counts[index] = get(index, 0.0) + count * weight

    @property
    def total(self) -> float:
        return sum(self.counts.values())

    def at_most(self, ms: float) -> float:
        """How many values are (to bucket precision) at most `ms`: whole buckets below it."""
        limit = bucket_of(ms)
        return sum(c for i, c in self.counts.items() if i < limit)

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 < q ≤ 1) in milliseconds, or None when empty."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """Several quantiles (ascending q) from one sort and one walk; None each when empty."""
        total = self.total
        if total <= 0:
            return [None] * len(qs)
        ordered = sorted((i, c) for i, c in self.counts.items() if c > 0)
        found: list[float | None] = []
        at, cumulative = 0, 0.0
        for q in qs:
            rank = min(max(q, 0.0), 1.0) * total
            while at < len(ordered) and cumulative + ordered[at][1] < rank:
                cumulative += ordered[at][1]
                at += 1
            if at == len(ordered):
                found.append(_inside(ordered[-1][0], 1.0))
            else:
                index, count = ordered[at]
                found.append(_inside(index, (rank - cumulative) / count))
        return found


def _inside(index: int, fraction: float) -> float:
    """A point `fraction` of the way through bucket `index`, kept strictly inside it."""
    lower, upper = bounds(index)
    fraction = min(max(fraction, 0.0), 0.999)
    if index == 0:
        return upper * fraction
    return float(lower * (upper / lower) ** fraction)
