"""How long each canary step should take at a given request rate (for `gateway validate`).

Owns the duration model, a drift approximation of the judge's tests:
- the log of the best mixture component of an e-process is a random walk over events, with drift
  μ (the expected log-likelihood ratio per event) and spread σ. It needs a = ln(threshold) +
  ln(J) to cross (J components, uniform weights), so about a/μ events ("expected") and
  N90 with μ·N − 1.28·σ·√N = a events ("p90", a deliberately pessimistic 90th percentile);
- errors: the relative test (events = errors at rate × baseline error rate) or the absolute rule
  (canary requests for the Beta-mixture e-process of p_C < p_B + δ to reach its threshold along
  the expected path, against the baseline's lower confidence bound), whichever is faster; with
  δ > 0 each route has α/2 (thresholds 2/α, and 4/α with the baseline bound at α/4);
- latency: slow events arrive at rate × (1 − error rate) × (1 − pXX), after the warm-up;
- min_samples / (share × rate) and min_duration are floors.
The candidate is assumed equal to the baseline. `rollback_s` is the same model for the harm test
against a candidate that is θ × worse on errors. The simulation tests check these numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.canary.settings import CanarySettings, Step
from gateway.canary.stats import (
    HARM_THETAS,
    abs_prior_b,
    below_log_e,
    event_share,
    lower_bound,
    safety_thetas,
)

Z90 = 1.2815515655446004


@dataclass(frozen=True, slots=True)
class StepProjection:
    index: int
    weight: float
    canary_rps: float
    samples_s: float  # to reach min_samples
    errors_s: float  # error safety, expected
    errors_p90_s: float
    latency_s: float  # tail safety incl. warm-up (0 when the tail test is off)
    latency_p90_s: float
    rollback_s: float  # harm test against a 2× error-rate candidate, expected
    expected_s: float  # the step's projected duration
    p90_s: float
    binding: str  # min_samples | min_duration | errors | latency
    max_duration_s: float

    @property
    def fits(self) -> bool:
        return self.expected_s <= self.max_duration_s


def walk(
    rho: float, theta_true: float, thetas: tuple[float, ...], null: float
) -> tuple[float, float]:
    """Drift and spread per event of the best component's log-likelihood ratio."""
    p_true, p0 = event_share(rho, theta_true), event_share(rho, null)
    best = (-math.inf, 0.0)
    for theta in thetas:
        pj = event_share(rho, theta)
        up, down = math.log(pj / p0), math.log((1 - pj) / (1 - p0))
        mu = p_true * up + (1 - p_true) * down
        var = p_true * up * up + (1 - p_true) * down * down - mu * mu
        best = max(best, (mu, math.sqrt(max(var, 0.0))))
    return best


def events_needed(mu: float, sigma: float, a: float) -> tuple[float, float]:
    """(expected, pessimistic p90) events for a walk of drift μ and spread σ to gain a."""
    if mu <= 0:
        return math.inf, math.inf
    root = (Z90 * sigma + math.sqrt((Z90 * sigma) ** 2 + 4 * mu * a)) / (2 * mu)
    return a / mu, root * root


def abs_samples(
    p_b: float, margin_abs: float, log_threshold: float, rho: float = 0.0, alpha_b: float = 0.0
) -> float:
    """Canary requests for the absolute rule to pass when p_C = p_B (on the expected path).

    With `rho` and `alpha_b` the limit is the baseline's (1 − alpha_b) lower confidence bound
    plus the margin, the baseline having served (1 − ρ)/ρ requests per canary request (what the
    judge does); without them the limit is p_B + margin."""
    if margin_abs <= 0:
        return math.inf
    b = abs_prior_b(margin_abs)

    def passes(n: float) -> bool:
        floor = p_b
        if rho > 0 and alpha_b > 0:
            m = n * (1 - rho) / rho
            floor = lower_bound(p_b * m, m, alpha_b, b)
        return below_log_e(p_b * n, n, floor + margin_abs, b) >= log_threshold

    lo, hi = 1.0, 1.0
    while not passes(hi):
        lo, hi = hi, hi * 2
        if hi > 1e12:
            return math.inf
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if passes(mid) else (mid, hi)
    return hi


def _errors_s(s: CanarySettings, rho: float, rate: float, p_b: float) -> tuple[float, float]:
    an = s.analysis
    split = an.error_margin_abs > 0  # two routes at α/2 each (judge.errors_safe_log_e)
    a_log = math.log(s.safe_threshold * (2 if split else 1))
    thetas = safety_thetas(an.error_margin_rel)
    mu, sigma = walk(rho, 1.0, thetas, an.error_margin_rel)
    mean, p90 = events_needed(mu, sigma, a_log + math.log(len(thetas)))
    events_per_s = rate * p_b
    rel = (mean / events_per_s, p90 / events_per_s) if events_per_s > 0 else (math.inf, math.inf)
    n_abs = math.inf
    if split:
        abs_log = math.log(4 * s.safe_threshold)
        n_abs = abs_samples(p_b, an.error_margin_abs, abs_log, rho, an.alpha_safe / 4)
    return min(rel[0], n_abs / (rho * rate)), min(rel[1], n_abs / (rho * rate))


def _latency_s(s: CanarySettings, rho: float, rate: float, p_b: float) -> tuple[float, float]:
    if not s.latency_enabled:
        return 0.0, 0.0
    an = s.analysis
    thetas = safety_thetas(an.latency_margin_rel)
    mu, sigma = walk(rho, 1.0, thetas, an.latency_margin_rel)
    a = math.log(s.safe_threshold) + math.log(len(thetas))
    mean, p90 = events_needed(mu, sigma, a)
    events_per_s = rate * (1 - p_b) * s.slow_fraction
    warmup = max(an.warmup_s, an.warmup_requests / (rho * rate))
    return warmup + mean / events_per_s, warmup + p90 / events_per_s


def _rollback_s(s: CanarySettings, rho: float, rate: float, p_b: float, theta: float) -> float:
    mu, sigma = walk(rho, theta, HARM_THETAS, 1.0)
    mean, _ = events_needed(mu, sigma, math.log(s.harm_threshold) + math.log(len(HARM_THETAS)))
    return mean / (rate * p_b * (rho * theta + 1 - rho)) if p_b > 0 else math.inf


def project_step(
    s: CanarySettings, index: int, rate_rps: float, p_b: float, theta_bad: float = 2.0
) -> StepProjection:
    step: Step = s.steps[index]
    rho = step.weight / 100.0
    if not 0 < rho < 1 or rate_rps <= 0:
        inf = math.inf
        return StepProjection(
            index, step.weight, rho * rate_rps, inf, inf, inf, inf, inf, inf, inf, inf,
            "errors", step.max_duration_s,
        )  # fmt: skip
    samples = step.min_samples / (rho * rate_rps)
    errors, errors90 = _errors_s(s, rho, rate_rps, p_b)
    latency, latency90 = _latency_s(s, rho, rate_rps, p_b)
    parts = {
        "min_samples": (samples, samples),
        "min_duration": (step.min_duration_s, step.min_duration_s),
        "errors": (errors, errors90),
        "latency": (latency, latency90),
    }
    binding = max(parts, key=lambda name: parts[name][0])
    return StepProjection(
        index=index,
        weight=step.weight,
        canary_rps=rho * rate_rps,
        samples_s=samples,
        errors_s=errors,
        errors_p90_s=errors90,
        latency_s=latency,
        latency_p90_s=latency90,
        rollback_s=_rollback_s(s, rho, rate_rps, p_b, theta_bad),
        expected_s=parts[binding][0],
        p90_s=max(p[1] for p in parts.values()),
        binding=binding,
        max_duration_s=step.max_duration_s,
    )


def project(
    settings: CanarySettings, rate_rps: float, baseline_error_rate: float
) -> tuple[StepProjection, ...]:
    """The projected duration of every step for an equal candidate at this traffic."""
    return tuple(
        project_step(settings, i, rate_rps, baseline_error_rate) for i in range(len(settings.steps))
    )


def _minutes(seconds: float) -> str:
    return "never" if math.isinf(seconds) else f"{seconds / 60:.0f} min"


def format_projection(rows: tuple[StepProjection, ...], rate_rps: float, p_b: float) -> str:
    """A plain-text table for `gateway validate`."""
    lines = [
        f"canary projection at {rate_rps:g} req/s, baseline error rate {p_b:.2%}"
        " (equal candidate; p90 is pessimistic):",
        "  step  weight  canary req/s  expected   p90        max        bound by"
        "      2x-errors rollback",
    ]
    for r in rows:
        mark = "" if r.fits else "  <- exceeds max_duration"
        lines.append(
            f"  {r.index:>4}  {r.weight:>5g}%  {r.canary_rps:>12.2f}  {_minutes(r.expected_s):<9}"
            f"  {_minutes(r.p90_s):<9}  {_minutes(r.max_duration_s):<9}  {r.binding:<12}"
            f"  {_minutes(r.rollback_s)}{mark}"
        )
    total = sum(r.expected_s for r in rows)
    lines.append(f"  total expected: {_minutes(total)}")
    return "\n".join(lines)
