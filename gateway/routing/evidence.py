"""From a snapshot's buckets to beliefs: decayed counts per version and P(near the best).

Evidence per version is a set of Bernoulli *components*, each a Beta(1 + good, 1 + bad)
posterior over exponentially decayed counts (a bucket weighs 2^(−age/half-life), age measured to
the middle of the time it covers, so old evidence fades and a recovered version is believed):

- `errors`: attempts that did not fail because of the version, among judged attempts;
- `latency` / `ttft`: successful attempts that were *fast*, among successful attempts — at most
  `fast_ms` (`fast_ttft_ms`) or, by default, max(best median × fast_factor, best median +
  fast_margin_ms), the best median being the lowest among trusted versions.

The `latency` objective judges `errors` and `latency` together, `ttft` judges `errors` and
`ttft`, `errors` only `errors`: a version is *near the best* when on every component it is
within that component's tolerance of the best version (`tolerance` for errors, the looser
`fast_tolerance` for the noisier fast rates). The `score` objective instead mixes the components
with `score_weights` into one number and compares it within `tolerance`. `near_best` estimates
by Monte Carlo, from posterior draws made with the injected RNG (Thompson-style), the probability
that each version is near the best: equivalent versions all get ~1 (so they share traffic fairly
instead of the usual winner-takes-all), a clearly worse one ~0. Client errors, cancellations and
429s are in no count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from random import Random

from gateway.config.routes import Performance
from gateway.livestats.histogram import Histogram
from gateway.livestats.window import BucketStats


@dataclass(frozen=True, slots=True)
class Component:
    name: str  # "errors", "latency" or "ttft"
    weight: float  # in a `score` mix
    tolerance: float  # when judged on its own


@dataclass(frozen=True, slots=True)
class Objective:
    components: tuple[Component, ...]
    mixed: bool  # True: one weighted score (objective `score`); False: every component must pass
    tolerance: float  # for the mixed score


@dataclass(frozen=True, slots=True)
class Evidence:
    """One version's decayed counts (floats) and its undecayed judged count in the window."""

    samples: int
    judged: float
    successes: float
    latency: Histogram
    ttft: Histogram

    def counts(self, component: str, fast_ms: float, fast_ttft_ms: float) -> tuple[float, float]:
        """(good, trials) of one component."""
        if component == "latency":
            return self.latency.at_most(fast_ms), self.latency.total
        if component == "ttft":
            return self.ttft.at_most(fast_ttft_ms), self.ttft.total
        return self.successes, self.judged


def objective(settings: Performance) -> Objective:
    errors = Component("errors", settings.score_weights.errors, settings.tolerance)
    if settings.objective == "score":
        w = settings.score_weights
        mix = (errors, Component("latency", w.latency, 0.0), Component("ttft", w.ttft, 0.0))
        return Objective(tuple(c for c in mix if c.weight > 0), True, settings.tolerance)
    if settings.objective == "errors":
        return Objective((errors,), False, settings.tolerance)
    fast = Component(settings.objective, 1.0, settings.fast_tolerance)
    return Objective((errors, fast), False, settings.tolerance)


def decayed(
    buckets: Sequence[BucketStats], now: float, bucket_s: int, half_life_s: float
) -> Evidence:
    judged = successes = 0.0
    samples = 0
    latency, ttft = Histogram(), Histogram()
    for bucket in buckets:
        covered = min(max(now - bucket.start, 0.0), bucket_s)
        age = max(now - (bucket.start + covered / 2), 0.0)
        weight = 0.5 ** (age / half_life_s)
        samples += bucket.successes + bucket.failures
        judged += (bucket.successes + bucket.failures) * weight
        successes += bucket.successes * weight
        latency.merge(bucket.latency, weight)
        ttft.merge(bucket.ttft, weight)
    return Evidence(samples, judged, successes, latency, ttft)


def thresholds(settings: Performance, trusted: Mapping[str, Evidence]) -> tuple[float, float]:
    """The (latency, TTFT) milliseconds under which a successful attempt counts as fast."""

    def relative(medians: list[float]) -> float:
        if not medians:
            return float("inf")
        best = min(medians)
        return max(best * settings.fast_factor, best + settings.fast_margin_ms)

    latency = [m for e in trusted.values() if (m := e.latency.quantile(0.5)) is not None]
    ttft = [m for e in trusted.values() if (m := e.ttft.quantile(0.5)) is not None]
    return (
        settings.fast_ms if settings.fast_ms is not None else relative(latency),
        settings.fast_ttft_ms if settings.fast_ttft_ms is not None else relative(ttft),
    )


Posterior = list[tuple[float, float]]  # (alpha, beta) per component of the objective


def posteriors(
    evidence: Mapping[str, Evidence], goal: Objective, fast: tuple[float, float]
) -> dict[str, Posterior]:
    out: dict[str, Posterior] = {}
    for version, e in evidence.items():
        parts = []
        for component in goal.components:
            good, trials = e.counts(component.name, *fast)
            good = min(good, trials)
            parts.append((1.0 + good, 1.0 + trials - good))
        out[version] = parts
    return out


def mean_reward(posterior: Posterior, goal: Objective) -> float:
    """The posterior mean reward: the weighted score, or P(every component good)."""
    means = [a / (a + b) for a, b in posterior]
    if goal.mixed:
        weights = [c.weight for c in goal.components]
        return sum(w * m for w, m in zip(weights, means, strict=True)) / sum(weights)
    return math.prod(means)


def near_best(
    beliefs: Mapping[str, Posterior], goal: Objective, draws: int, rng: Random
) -> dict[str, float]:
    """P(near the best) for each version, from `draws` joint posterior draws."""
    names = list(beliefs)
    hits = dict.fromkeys(names, 0)
    beta = rng.betavariate
    weights = [c.weight for c in goal.components]
    total = sum(weights)
    for _ in range(draws):
        values = {n: [beta(a, b) for a, b in beliefs[n]] for n in names}
        if goal.mixed:
            score = {
                n: sum(w * x for w, x in zip(weights, v, strict=True)) / total
                for n, v in values.items()
            }
            cut = max(score.values()) - goal.tolerance
            winners = [n for n in names if score[n] >= cut]
        else:
            cuts = [
                max(v[k] for v in values.values()) - c.tolerance
                for k, c in enumerate(goal.components)
            ]
            winners = [
                n for n in names if all(x >= cut for x, cut in zip(values[n], cuts, strict=True))
            ]
        for name in winners:
            hits[name] += 1
    return {name: hits[name] / draws for name in names}
