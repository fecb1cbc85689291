"""Histogram percentiles are within one bucket of numpy's exact percentiles on the same data.

"Exact" is the nearest-rank percentile (numpy `inverted_cdf`: an actual sample). numpy's default
`linear` method interpolates between two samples that may lie several buckets apart in a sparse
tail; there the estimate must be within one bucket of the span between those two samples.
"""

from __future__ import annotations

import numpy as np
import pytest

from gateway.livestats.histogram import GROWTH, MAX_INDEX, MIN_MS, Histogram, bounds, bucket_of

QUANTILES = (0.5, 0.9, 0.95, 0.99)


def samples(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "lognormal":
        return rng.lognormal(np.log(80), 0.6, n)
    if kind == "uniform":
        return rng.uniform(0.1, 3000, n)
    if kind == "exponential":
        return rng.exponential(40, n)
    if kind == "bimodal":
        return np.concatenate([rng.normal(20, 2, n // 2), rng.normal(900, 50, n - n // 2)])
    return rng.pareto(1.5, n) * 5 + 0.01  # heavy tail


KINDS = ["lognormal", "uniform", "exponential", "bimodal", "pareto"]


def cases(kind: str) -> list[tuple[int, np.ndarray, Histogram]]:
    out = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 5000))
        data = np.abs(samples(kind, rng, n))
        out.append((seed, data, Histogram.of(data.tolist())))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_percentiles_within_one_bucket_of_exact(kind: str) -> None:
    for seed, data, hist in cases(kind):
        for q in QUANTILES:
            exact = float(np.percentile(data, q * 100, method="inverted_cdf"))
            estimate = hist.quantile(q)
            assert estimate is not None
            assert abs(bucket_of(estimate) - bucket_of(exact)) <= 1, (kind, seed, q)


@pytest.mark.parametrize("kind", KINDS)
def test_interpolated_percentiles_within_one_bucket_of_their_span(kind: str) -> None:
    for seed, data, hist in cases(kind):
        ordered = np.sort(data)
        for q in QUANTILES:
            rank = (len(data) - 1) * q
            low, high = ordered[int(np.floor(rank))], ordered[int(np.ceil(rank))]
            assert low <= float(np.percentile(data, q * 100)) <= high
            estimate = bucket_of(hist.quantile(q) or 0.0)
            assert bucket_of(low) - 1 <= estimate <= bucket_of(high) + 1, (kind, seed, q)


def test_the_check_catches_an_estimate_two_buckets_off() -> None:
    data = np.random.default_rng(1).lognormal(np.log(80), 0.6, 2000)
    exact = float(np.percentile(data, 95))
    wrong = exact * GROWTH**2.5
    assert abs(bucket_of(wrong) - bucket_of(exact)) > 1


def test_bucket_layout_is_log_spaced_and_total() -> None:
    assert bucket_of(0.0) == 0 and bucket_of(MIN_MS / 2) == 0 and bucket_of(float("nan")) == 0
    assert bucket_of(1e12) == MAX_INDEX
    for index in range(1, 120):
        lower, upper = bounds(index)
        assert upper / lower == pytest.approx(GROWTH)
        assert bucket_of(lower * 1.0001) == index and bucket_of(upper * 0.9999) == index


def test_empty_and_decayed_histograms() -> None:
    assert Histogram().quantile(0.5) is None
    hist = Histogram.of([10.0] * 10)
    old = Histogram.of([1000.0] * 10)
    hist.merge(old, weight=0.1)  # old evidence weighs 1 in 10
    assert hist.total == pytest.approx(11.0)
    median = hist.quantile(0.5)
    assert median is not None and bucket_of(median) == bucket_of(10.0)
    assert hist.at_most(100.0) == pytest.approx(10.0)


@pytest.mark.parametrize("kind", KINDS)
def test_quantiles_in_one_pass_equal_one_at_a_time(kind: str) -> None:
    qs = (0.0, 0.5, 0.9, 0.95, 0.99, 1.0)
    for _, _, hist in cases(kind):
        assert hist.quantiles(qs) == [hist.quantile(q) for q in qs]
    assert Histogram().quantiles(qs) == [None] * len(qs)
