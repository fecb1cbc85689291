"""Anytime-valid statistics for the canary judge: e-processes, the absolute-margin bound, SRM.

Owns the formulas, nothing else (pure functions and frozen values; no I/O, no clock, no numpy at
run time). See `docs/canary.md` for the plain-words version.

- `EProcess`: the counting-process mixture e-process (Lindon & Malek 2022) over per-bucket counts
  (n_C, n_B, k_C, k_B). With ρ_t = n_C/(n_C+n_B) and π_t(θ) = ρ_t·θ/(ρ_t·θ + 1 − ρ_t), component
  j multiplies (π_t(θ_j)/π_t(θ0))^k_C · ((1−π_t(θ_j))/(1−π_t(θ0)))^k_B per bucket; the e-value
  is the uniform mixture over j. Harm: θ0 = 1, θ_j ∈ HARM_THETAS. Safety: θ0 = the margin,
  θ_j = θ0^c for c ∈ SAFE_EXPONENTS (θ0 = 1.5 gives 0.50, 0.75, 1, 1.15). State is one log
  accumulator per component, so it serializes exactly and updates incrementally.
  Validity at θ = 1 is exact, not approximate: given the bucket's n_C, n_B and events, k_C is
  hypergeometric, which is smaller than the binomial in convex order (Hoeffding 1963) and each
  factor is convex in k_C, so every factor has mean ≤ 1. At a margin θ0 ≠ 1 the binomial form is
  the usual small-rate approximation of Fisher's noncentral hypergeometric law.
- `below_log_e` / `upper_bound`: the absolute margin. A Beta(1, b) mixture of Bernoulli
  likelihoods divided by the likelihood at p is a nonnegative martingale under p (Robbins'
  mixture), so {p : M_n(p) < 1/α} is a confidence sequence valid at every n at once (Ville). The
  e-process for H0: p ≥ c is inf_{p≥c} M_n(p) = M_n(max(c, k/n)). The prior b = 1/δ − 1 puts the
  prior mean at the margin δ, which makes the bound tight where it is used.
  `lower_bound` is the same confidence sequence's lower end: the absolute route uses it for the
  baseline's rate, so that route is valid at any time too (docs/canary.md, "absolute margin").
- `srm_log_e`: the sequential sample-ratio check. Under a correct split each counted unit
  (request, or new session with a sticky key) lands on the candidate with probability ρ0
  independently, so a Beta(c·ρ0, c·(1−ρ0)) mixture of binomial likelihoods over the likelihood
  at ρ0 is a nonnegative martingale; freezing when it reaches 1/srm_alpha is a test at srm_alpha
  however often it is looked at (Ville). `srm_test` (Pearson's chi-square, p = erfc(sqrt(χ²/2)))
  is kept for the status page only: it is a fixed-n test and decides nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HARM_THETAS: tuple[float, ...] = (1.25, 1.5, 2.0, 3.0, 5.0)
SAFE_EXPONENTS: tuple[float, ...] = (-1.7, -0.7, 0.0, 0.35)
E_CAP = 1e300  # e-values are reported capped, so records stay finite JSON
SRM_MIN_EXPECTED = 10.0  # below this expected count per arm the chi-square is not run
SRM_PRIOR_N = 50.0  # c: the SRM prior is worth this many units (sd ≈ 40 % of a 10 % share)


def event_share(rho: float, theta: float) -> float:
    """π(θ): the chance that an event came from the candidate when its rate is θ × baseline's."""
    return rho * theta / (rho * theta + 1.0 - rho)


def safety_thetas(margin: float) -> tuple[float, ...]:
    """The safety mixture's alternatives for a relative margin θ0 (all below θ0)."""
    return tuple(margin**c for c in SAFE_EXPONENTS)


def log_mean_exp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum([math.exp(v - top) for v in values]) / len(values))


def capped_exp(log_value: float) -> float:
    return E_CAP if log_value >= math.log(E_CAP) else math.exp(log_value)


@dataclass(frozen=True, slots=True)
class EProcess:
    """A uniform mixture of likelihood ratios over `thetas` against the null `null` (θ0)."""

    null: float
    thetas: tuple[float, ...]
    log_terms: tuple[float, ...]
    events: int = 0  # informative events seen (both arms had traffic in their bucket)

    @classmethod
    def harm(cls) -> EProcess:
        """H0: θ ≤ 1 (the candidate is no worse). Large values mean harm."""
        return cls(1.0, HARM_THETAS, (0.0,) * len(HARM_THETAS))

    @classmethod
    def safety(cls, margin: float) -> EProcess:
        """H0: θ ≥ margin (worse by at least the margin). Large values mean non-inferior."""
        thetas = safety_thetas(margin)
        return cls(margin, thetas, (0.0,) * len(thetas))

    def update(self, n_c: int, n_b: int, k_c: int, k_b: int) -> EProcess:
        """Add one time bucket: requests (n) and events (k) of the candidate and the baseline."""
        if k_c + k_b == 0 or n_c == 0 or n_b == 0:
            return self  # every factor is exactly 1: no information in this bucket
        # ln(π_j/π0) = ln(θ_j/θ0) + ln(D0/Dj) and ln((1−π_j)/(1−π0)) = ln(D0/Dj), D = 1 + ρ(θ−1)
        rho = n_c / (n_c + n_b)
        k = k_c + k_b
        base = k * math.log1p(rho * (self.null - 1.0)) - k_c * math.log(self.null)
        terms = [
            acc + base + k_c * math.log(theta) - k * math.log1p(rho * (theta - 1.0))
            for theta, acc in zip(self.thetas, self.log_terms, strict=True)
        ]
        return EProcess(self.null, self.thetas, tuple(terms), self.events + k)

    def log_value(self) -> float:
        return log_mean_exp(self.log_terms)

    def reaches(self, threshold: float) -> bool:
        """Whether the e-value is ≥ threshold (cheap when no component is near it)."""
        log_threshold = math.log(threshold)
        return max(self.log_terms) >= log_threshold and self.log_value() >= log_threshold

    def value(self) -> float:
        return capped_exp(self.log_value())

    def to_dict(self) -> dict[str, Any]:
        return {
            "null": self.null,
            "thetas": list(self.thetas),
            "log_terms": list(self.log_terms),
            "events": self.events,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EProcess:
        thetas = tuple(float(t) for t in data["thetas"])
        terms = tuple(float(t) for t in data["log_terms"])
        if len(thetas) != len(terms) or not thetas:
            raise ValueError("e-process: thetas and log_terms must be non-empty and equal length")
        return cls(float(data["null"]), thetas, terms, int(data["events"]))


def abs_prior_b(margin_abs: float) -> float:
    """The Beta(1, b) prior of the absolute-margin bound: prior mean at the margin."""
    return max(1.0, 1.0 / margin_abs - 1.0) if margin_abs > 0 else 1.0


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def beta_mixture_log_e(k: float, n: float, p: float, prior_b: float) -> float:
    """ln M_n(p) = ln[B(1+k, b+n−k)/B(1, b)] − k·ln p − (n−k)·ln(1−p) for k events in n trials."""
    if p <= 0.0:
        return math.inf if k > 0 else 0.0
    if p >= 1.0:
        return math.inf if k < n else 0.0
    mix = _log_beta(1.0 + k, prior_b + n - k) - _log_beta(1.0, prior_b)
    return mix - k * math.log(p) - (n - k) * math.log1p(-p)


def below_log_e(k: float, n: float, limit: float, prior_b: float) -> float:
    """ln of an e-process for H0: p ≥ limit, i.e. evidence that the event rate is below `limit`."""
    if n <= 0:
        return 0.0
    return beta_mixture_log_e(k, n, max(limit, k / n), prior_b)


def upper_bound(k: int, n: int, alpha: float, prior_b: float) -> float:
    """The time-uniform (1−α) upper confidence bound on p after k events in n trials."""
    if n <= 0:
        return 1.0
    target = math.log(1.0 / alpha)
    lo, hi = k / n, 1.0
    if k == n:
        return 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if beta_mixture_log_e(k, n, mid, prior_b) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def poisson_sf(k: int, mean: float) -> float:
    """P(X ≥ k) for X ~ Poisson(mean)."""
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    term = total = math.exp(-mean)
    for i in range(1, k):
        term *= mean / i
        total += term
    return max(0.0, 1.0 - total)


def lower_bound(k: float, n: float, alpha: float, prior_b: float) -> float:
    """The time-uniform (1−α) lower confidence bound on p after k events in n trials."""
    if n <= 0 or k == 0:
        return 0.0
    # ln M_n(p) = mix − k·ln p − (n−k)·ln(1−p); `mix` does not depend on p (computed once)
    target = _log_beta(1.0 + k, prior_b + n - k) - _log_beta(1.0, prior_b) - math.log(1 / alpha)
    lo, hi = 0.0, k / n
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if k * math.log(mid) + (n - k) * math.log1p(-mid) <= target:  # M_n(mid) ≥ 1/α
            lo = mid
        else:
            hi = mid
    return lo


def srm_log_e(n_candidate: int, n_baseline: int, expected_share: float) -> float:
    """ln of the sequential SRM e-value for the split so far (0 without a real split)."""
    if not 0.0 < expected_share < 1.0 or n_candidate + n_baseline == 0:
        return 0.0
    a, b = SRM_PRIOR_N * expected_share, SRM_PRIOR_N * (1.0 - expected_share)
    mix = _log_beta(a + n_candidate, b + n_baseline) - _log_beta(a, b)
    return mix - n_candidate * math.log(expected_share) - n_baseline * math.log1p(-expected_share)


@dataclass(frozen=True, slots=True)
class SrmResult:
    n_candidate: int
    n_baseline: int
    expected_share: float
    statistic: float
    p_value: float

    @property
    def observed_share(self) -> float:
        total = self.n_candidate + self.n_baseline
        return self.n_candidate / total if total else 0.0


def srm_test(n_candidate: int, n_baseline: int, expected_share: float) -> SrmResult | None:
    """Chi-square test of the observed split; None while either expected count is < 10."""
    total = n_candidate + n_baseline
    if not 0.0 < expected_share < 1.0:
        return None
    expected_c = total * expected_share
    expected_b = total - expected_c
    if min(expected_c, expected_b) < SRM_MIN_EXPECTED:
        return None
    stat = (n_candidate - expected_c) ** 2 / (total * expected_share * (1.0 - expected_share))
    return SrmResult(n_candidate, n_baseline, expected_share, stat, math.erfc(math.sqrt(stat / 2)))
