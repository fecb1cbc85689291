"""From a snapshot's buckets to beliefs: decayed counts per version and P(near the best).

Each version's reward is Bernoulli: an attempt is *good* when it did not fail because of the
version and, for the latency (TTFT) objective, was also *fast*: at most `fast_ms` (`fast_ttft_ms`)
or, by default, at most max(best median × fast_factor, best median + fast_margin_ms), where
"best median" is the lowest median among trusted versions. Counts are discounted exponentially
with the configured half-life (a bucket weighs 2^(−age/half-life), age measured to the middle of
the time it covers), so old evidence fades and a recovered version is believed again.

Posterior per version and component: Beta(1 + good, 1 + bad). The `score` objective mixes the
error, latency and TTFT components with `score_weights`. `near_best` estimates, by Monte Carlo
with the injected RNG (Thompson-style posterior draws), the probability that each version's
reward is within `tolerance` of the best one's: versions that are equivalent all get ~1 (so they
share traffic fairly instead of the usual winner-takes-all), a clearly worse one gets ~0.
Client errors, cancellations and 429s are not in any count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from random import Random

from gateway.config.schema import Performance
from gateway.store.histogram import Histogram
from gateway.store.window import BucketStats

Components = dict[str, float]  # component name ("errors", "latency", "ttft") → weight


@dataclass(frozen=True, slots=True)
class Evidence:
    """One version's decayed counts (floats) and its undecayed judged count in the window."""

    samples: int
    judged: float
    successes: float
    latency: Histogram
    ttft: Histogram

    def good(self, component: str, fast_ms: float, fast_ttft_ms: float) -> float:
        if component == "latency":
            return self.latency.at_most(fast_ms)
        if component == "ttft":
            return self.ttft.at_most(fast_ttft_ms)
        return self.successes


def components(settings: Performance) -> Components:
    if settings.objective == "score":
        weights = settings.score_weights
        mix = {"errors": weights.errors, "latency": weights.latency, "ttft": weights.ttft}
        return {name: w for name, w in mix.items() if w > 0}
    return {settings.objective: 1.0}


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


Posterior = list[tuple[float, float, float]]  # (component weight, alpha, beta)


def posteriors(
    evidence: Mapping[str, Evidence], mix: Components, fast: tuple[float, float]
) -> dict[str, Posterior]:
    out: dict[str, Posterior] = {}
    for version, e in evidence.items():
        parts = []
        for component, weight in mix.items():
            good = min(e.good(component, *fast), e.judged)
            parts.append((weight, 1.0 + good, 1.0 + e.judged - good))
        out[version] = parts
    return out


def mean_reward(posterior: Posterior) -> float:
    total = sum(w for w, _, _ in posterior)
    return sum(w * a / (a + b) for w, a, b in posterior) / total


def near_best(
    beliefs: Mapping[str, Posterior], tolerance: float, draws: int, rng: Random
) -> dict[str, float]:
    """P(reward ≥ best reward − tolerance) for each version, from `draws` posterior draws."""
    names = list(beliefs)
    parts = [beliefs[n] for n in names]
    totals = [sum(w for w, _, _ in p) for p in parts]
    hits = [0] * len(names)
    beta = rng.betavariate
    for _ in range(draws):
        values = [
            sum(w * beta(a, b) for w, a, b in p) / total
            for p, total in zip(parts, totals, strict=True)
        ]
        cut = max(values) - tolerance
        for i, value in enumerate(values):
            if value >= cut:
                hits[i] += 1
    return {name: hits[i] / draws for i, name in enumerate(names)}
