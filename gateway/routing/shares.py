"""Splitting traffic into shares under per-version floors and ceilings ("water-filling").

`waterfill(mass, raw, lower, upper)` returns shares proportional to `raw` that add up to `mass`,
each kept within [lower, upper]: versions that would fall below their floor are lifted to it,
those that would exceed their ceiling are cut to it, and the rest share what remains in
proportion. It finds the common scale by bisection (monotone, so exact to float precision). When
the versions with weight are all at their ceilings, what is left is split equally among the
others (up to their ceilings).
"""

from __future__ import annotations

from collections.abc import Mapping

ITERATIONS = 80


def waterfill(
    mass: float,
    raw: Mapping[str, float],
    lower: Mapping[str, float],
    upper: Mapping[str, float],
) -> dict[str, float]:
    if not raw:
        return {}
    lows = {v: min(lower.get(v, 0.0), upper.get(v, 1.0)) for v in raw}
    highs = {v: upper.get(v, 1.0) for v in raw}
    if sum(lows.values()) >= mass:  # floors alone take everything: scale them down
        total = sum(lows.values())
        return {v: (lows[v] * mass / total if total else mass / len(raw)) for v in raw}
    if sum(highs.values()) <= mass:  # ceilings cannot absorb it all: fill to (and past) them
        total = sum(highs.values())
        return {v: (highs[v] * mass / total if total else mass / len(raw)) for v in raw}
    weights = dict(raw) if any(w > 0 for w in raw.values()) else dict.fromkeys(raw, 1.0)

    def filled(scale: float) -> dict[str, float]:
        return {v: min(max(scale * weights[v], lows[v]), highs[v]) for v in raw}

    low, high = 0.0, 1.0
    while sum(filled(high).values()) < mass and high < 1e18:
        high *= 2.0
    for _ in range(ITERATIONS):
        middle = (low + high) / 2
        if sum(filled(middle).values()) < mass:
            low = middle
        else:
            high = middle
    shares = filled(high)
    short = mass - sum(shares.values())
    if short > 1e-12:  # the weighted versions hit their ceilings: the rest goes to the others
        room = {v: highs[v] - shares[v] for v in raw if highs[v] - shares[v] > 1e-12}
        for v, extra in waterfill(short, dict.fromkeys(room, 1.0), {}, room).items():
            shares[v] += extra
    total = sum(shares.values())
    return {v: share * mass / total for v, share in shares.items()}


def fair_shares(
    pool: list[str] | tuple[str, ...], ceilings: Mapping[str, float]
) -> dict[str, float]:
    """Equal shares for the pool, capped by the ceilings (what equivalent versions should get)."""
    return waterfill(1.0, dict.fromkeys(pool, 1.0), {}, ceilings)
