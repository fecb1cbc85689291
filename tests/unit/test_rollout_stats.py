"""Golden values for the canary statistics, checked against independent numpy/scipy computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from gateway.canary.projection import abs_samples, events_needed, format_projection, project, walk
from gateway.canary.settings import Analysis, CanarySettings, Step
from gateway.canary.stats import (
    HARM_THETAS,
    EProcess,
    abs_prior_b,
    below_log_e,
    beta_mixture_log_e,
    event_share,
    safety_thetas,
    srm_test,
    upper_bound,
)


def reference_log_e(buckets: np.ndarray, thetas: tuple[float, ...], null: float) -> float:
    """The e-process as written in the reference: Σ_j w_j Π_t (π_t(θ_j)/π_t(θ0))^k_C ·
    ((1−π_t(θ_j))/(1−π_t(θ0)))^k_B, in the π form (not the algebraic shortcut the code uses)."""
    n_c, n_b, k_c, k_b = (buckets[:, i].astype(float) for i in range(4))
    ok = (n_c > 0) & (n_b > 0)
    rho = np.where(ok, n_c / np.maximum(n_c + n_b, 1), 0.5)
    p0 = rho * null / (rho * null + 1 - rho)
    logs = []
    for theta in thetas:
        pj = rho * theta / (rho * theta + 1 - rho)
        per_bucket = k_c * np.log(pj / p0) + k_b * np.log((1 - pj) / (1 - p0))
        logs.append(np.sum(np.where(ok, per_bucket, 0.0)))
    return float(special.logsumexp(logs) - math.log(len(thetas)))


def random_buckets(rng: np.random.Generator, count: int) -> np.ndarray:
    n = rng.poisson(40, count)
    n_c = rng.binomial(n, rng.uniform(0.02, 0.6, count))
    n_b = n - n_c
    return np.stack([n_c, n_b, rng.binomial(n_c, 0.06), rng.binomial(n_b, 0.04)], axis=1).astype(
        int
    )


def feed(process: EProcess, buckets: np.ndarray) -> EProcess:
    for n_c, n_b, k_c, k_b in buckets.tolist():
        process = process.update(n_c, n_b, k_c, k_b)
    return process


# --- e-processes -----------------------------------------------------------------------------


def test_harm_single_bucket_by_hand() -> None:
    # ρ = 1/2, one candidate event: factor_j = π(θ_j)/ρ = 2θ_j/(θ_j+1)
    expected = np.mean([2 * t / (t + 1) for t in (1.25, 1.5, 2.0, 3.0, 5.0)])
    assert expected == pytest.approx(6.811111 / 5, rel=1e-6)
    assert EProcess.harm().update(1, 1, 1, 0).value() == pytest.approx(expected, rel=1e-12)


def test_safety_single_bucket_by_hand() -> None:
    # ρ = 1/2, θ0 = 1.5 → π0 = 0.6; one baseline event: factor_j = (1/(θ_j+1)) / 0.4
    thetas = safety_thetas(1.5)
    assert thetas == pytest.approx((0.5019, 0.7529, 1.0, 1.1524), abs=1e-4)
    expected = np.mean([(1 / (t + 1)) / 0.4 for t in thetas])
    assert EProcess.safety(1.5).update(1, 1, 0, 1).value() == pytest.approx(expected, rel=1e-12)


def test_event_share() -> None:
    assert event_share(0.1, 1.0) == pytest.approx(0.1)
    assert event_share(0.1, 2.0) == pytest.approx(0.2 / 1.1)
    assert event_share(0.5, 1.5) == pytest.approx(0.6)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_equals_reference_batch(seed: int) -> None:
    buckets = random_buckets(np.random.default_rng(seed), 300)
    harm, safe = feed(EProcess.harm(), buckets), feed(EProcess.safety(1.5), buckets)
    assert harm.log_value() == pytest.approx(reference_log_e(buckets, HARM_THETAS, 1.0), abs=1e-9)
    ref_safe = reference_log_e(buckets, safety_thetas(1.5), 1.5)
    assert safe.log_value() == pytest.approx(ref_safe, abs=1e-9)
    informative = (buckets[:, 0] > 0) & (buckets[:, 1] > 0)
    assert harm.events == int(buckets[informative][:, 2:].sum())


def test_order_and_split_do_not_matter() -> None:
    buckets = random_buckets(np.random.default_rng(7), 120)
    whole = feed(EProcess.harm(), buckets)
    reversed_ = feed(EProcess.harm(), buckets[::-1])
    assert reversed_.log_terms == pytest.approx(whole.log_terms, abs=1e-9)
    first = feed(EProcess.harm(), buckets[:50])
    resumed = EProcess.from_dict(json.loads(json.dumps(first.to_dict())))
    assert resumed == first
    assert feed(resumed, buckets[50:]) == whole


def test_buckets_without_information_change_nothing() -> None:
    start = EProcess.harm().update(10, 90, 1, 2)
    assert start.update(10, 90, 0, 0) is start  # no events
    assert start.update(0, 90, 0, 5) is start  # candidate got no traffic
    assert start.update(10, 0, 3, 0) is start  # baseline got no traffic


def test_from_dict_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        EProcess.from_dict({"null": 1.0, "thetas": [1.5, 2.0], "log_terms": [0.0], "events": 0})


@pytest.mark.parametrize(("n_c", "n_b", "events"), [(5, 45, 3), (30, 30, 8), (80, 20, 12)])
def test_each_factor_is_an_e_value_under_the_exact_null(n_c: int, n_b: int, events: int) -> None:
    """At θ = 1 the bucket's k_C given its events is hypergeometric; each harm factor has mean ≤ 1
    (the binomial form is exact in expectation; hypergeometric is smaller in convex order)."""
    k = np.arange(events + 1)
    pmf = stats.hypergeom(n_c + n_b, n_c, events).pmf(k)
    rho = n_c / (n_c + n_b)
    for theta in HARM_THETAS:
        pj = event_share(rho, theta)
        factor = (pj / rho) ** k * ((1 - pj) / (1 - rho)) ** (events - k)
        assert float(pmf @ factor) <= 1.0 + 1e-12
        binomial = stats.binom(events, rho).pmf(k)
        assert float(binomial @ factor) == pytest.approx(1.0, abs=1e-12)


# --- the absolute margin ---------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n", "p", "b"), [(0, 100, 0.01, 199.0), (3, 500, 0.02, 50.0)])
def test_beta_mixture_against_numerical_integration(k: int, n: int, p: float, b: float) -> None:
    marginal, _ = integrate.quad(
        lambda q: q**k * (1 - q) ** (n - k) * stats.beta(1, b).pdf(q),
        0,
        1,
        points=[k / n, p],
        epsabs=0,
        epsrel=1e-12,
        limit=200,
    )
    expected = math.log(marginal) - k * math.log(p) - (n - k) * math.log1p(-p)
    assert beta_mixture_log_e(k, n, p, b) == pytest.approx(expected, rel=1e-6)


def test_upper_bound_zero_events_closed_form() -> None:
    # k = 0: M_n(p) = b/(b+n) / (1−p)^n, so the bound is 1 − (α·b/(b+n))^(1/n)
    for n in (50, 1000, 20000):
        b, alpha = 199.0, 0.05
        closed = 1 - (alpha * b / (b + n)) ** (1 / n)
        assert upper_bound(0, n, alpha, b) == pytest.approx(closed, rel=1e-9)
    assert upper_bound(0, 1000, 0.05, 199.0) == pytest.approx(
        (math.log(1199 / 199) + math.log(20)) / 1000, rel=0.01
    )


def test_upper_bound_solves_the_mixture_equation_with_events() -> None:
    k, n, alpha, b = 7, 800, 0.05, 199.0

    def gap(p: float) -> float:
        mix = special.betaln(1 + k, b + n - k) - special.betaln(1, b)
        return float(mix - k * math.log(p) - (n - k) * math.log1p(-p) - math.log(1 / alpha))

    expected = optimize.brentq(gap, k / n, 0.5, xtol=1e-14)
    assert upper_bound(k, n, alpha, b) == pytest.approx(expected, rel=1e-9)
    assert upper_bound(0, 0, alpha, b) == 1.0
    assert upper_bound(5, 5, alpha, b) == 1.0


def test_below_log_e_is_the_infimum_over_the_null() -> None:
    b = abs_prior_b(0.005)
    assert b == pytest.approx(199.0)
    # p̂ above the limit: the closest null point is p̂ itself, where the mixture cannot exceed 1
    assert below_log_e(30, 1000, 0.02, b) <= 0.0
    assert below_log_e(0, 0, 0.02, b) == 0.0
    assert below_log_e(2, 1000, 0.02, b) == pytest.approx(beta_mixture_log_e(2, 1000, 0.02, b))
    assert math.isinf(below_log_e(0, 10, 1.0, b))


def test_upper_bound_is_time_uniform() -> None:
    """P(some n ≤ 3000 has p outside the bound) ≤ α, with the bound checked at every n."""
    rng = np.random.default_rng(5)
    p, alpha, b, runs, horizon = 0.01, 0.05, 199.0, 2000, 3000
    k = np.cumsum(rng.random((runs, horizon)) < p, axis=1)
    n = np.arange(1, horizon + 1)
    log_m = (
        special.betaln(1 + k, b + n - k)
        - special.betaln(1, b)
        - k * math.log(p)
        - (n - k) * math.log1p(-p)
    )
    missed = (log_m >= math.log(1 / alpha)).any(axis=1).mean()
    assert missed <= alpha
    row, col = 3, 1999  # spot check: the code computes the same quantity
    code = beta_mixture_log_e(int(k[row, col]), col + 1, p, b)
    assert code == pytest.approx(log_m[row, col], abs=1e-9)


# --- SRM -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_c", "n_b", "share"), [(100, 900, 0.1), (130, 870, 0.1), (260, 740, 0.25), (520, 480, 0.5)]
)
def test_srm_matches_scipy_chisquare(n_c: int, n_b: int, share: float) -> None:
    total = n_c + n_b
    ref = stats.chisquare([n_c, n_b], [total * share, total * (1 - share)])
    res = srm_test(n_c, n_b, share)
    assert res is not None
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.observed_share == pytest.approx(n_c / total)


def test_srm_needs_expected_counts_and_a_real_split() -> None:
    assert srm_test(3, 60, 0.1) is None  # expected 6.3 candidate requests < 10
    assert srm_test(50, 50, 0.0) is None
    assert srm_test(50, 50, 1.0) is None
    res = srm_test(150, 850, 0.1)  # a 5-point routing bug at n = 1000
    assert res is not None and res.p_value < 1e-4


# --- projection ------------------------------------------------------------------------------

DOC = CanarySettings(
    "v1",
    "v2",
    steps=(Step(10, 500, 600, 5400), Step(25, 1000, 600, 3600), Step(50, 1000, 600, 3600)),
)


def test_walk_drift_is_the_kl_divergence() -> None:
    rho, null = 0.1, 1.5
    mu, sigma = walk(rho, 1.0, safety_thetas(null), null)
    p0 = event_share(rho, null)
    kl = rho * math.log(rho / p0) + (1 - rho) * math.log((1 - rho) / (1 - p0))
    assert mu == pytest.approx(kl, rel=1e-12)
    assert sigma > 0
    mean, p90 = events_needed(mu, sigma, 4.0)
    assert mean == pytest.approx(4.0 / mu)
    assert p90 > mean
    assert events_needed(0.0, 1.0, 4.0) == (math.inf, math.inf)


def test_abs_samples_zero_baseline_errors() -> None:
    # p_B = 0, δ = 0.5 pp, threshold 2/α = 40: n such that n·ln(1/(1−δ)) − ln((b+n)/b) = ln 40
    n = abs_samples(0.0, 0.005, math.log(40))
    gap = n * -math.log1p(-0.005) - math.log((199 + n) / 199) - math.log(40)
    assert gap == pytest.approx(0.0, abs=1e-6)
    assert 1000 < n < 1200
    assert math.isinf(abs_samples(0.0, 0.0, math.log(40)))


def test_projection_sanity() -> None:
    slow = project(DOC, 20, 0.02)
    fast = project(DOC, 80, 0.02)
    assert [r.weight for r in slow] == [10, 25, 50]
    for a, b in zip(slow, fast, strict=True):
        assert b.expected_s <= a.expected_s
        assert a.expected_s >= a.max_duration_s * 0 + 600  # the min_duration floor
        assert a.p90_s >= a.expected_s
    assert slow[0].errors_s > slow[1].errors_s > slow[2].errors_s  # a larger share learns faster
    assert slow[0].binding == "errors"
    assert all(r.fits for r in slow)
    assert 20 * 60 < slow[0].expected_s < 35 * 60  # the documented ≈ 26 min
    assert slow[0].rollback_s < slow[0].expected_s
    no_errors = CanarySettings("v1", "v2", steps=DOC.steps, analysis=Analysis(error_margin_abs=0))
    assert all(math.isinf(r.expected_s) for r in project(no_errors, 20, 0.0))
    text = format_projection(slow, 20, 0.02)
    assert "10%" in text and "total expected" in text
