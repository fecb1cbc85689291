"""Weighted routing: exact in distribution, deterministic under a seed, zero weights never drawn."""

from __future__ import annotations

import math
from collections import Counter
from random import Random

import pytest
from scipy.stats import binomtest, chisquare, norm

from gateway.routing import RequestContext
from gateway.routing.weighted import WeightedPolicy

CTX = RequestContext({}, {})
ALPHA = 1e-6


def draws(policy: WeightedPolicy, n: int, seed: int) -> Counter[str]:
    rng = Random(seed)
    return Counter(policy.plan(CTX, rng).versions[0] for _ in range(n))


def n_to_detect(p: float, delta: float, alpha: float = ALPHA, power: float = 0.99) -> int:
    """Samples for a two-sided binomial test at `alpha` to see a `delta` deviation with `power`."""
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return math.ceil((z * math.sqrt(p * (1 - p)) / delta) ** 2)


def test_split_is_exact_to_one_point() -> None:
    n = n_to_detect(0.10, 0.01)  # ≈ 27k draws: a 1-point error would be seen 99 % of the time
    counts = draws(WeightedPolicy({"v1": 90, "v2": 10}), n, seed=1)
    assert binomtest(counts["v2"], n, 0.10).pvalue > ALPHA


def test_the_same_test_rejects_a_one_point_bias() -> None:
    n = n_to_detect(0.10, 0.01)
    biased = draws(WeightedPolicy({"v1": 89, "v2": 11}), n, seed=1)  # 11 % instead of 10 %
    assert binomtest(biased["v2"], n, 0.10).pvalue < ALPHA


def test_three_way_split_chi_square() -> None:
    weights = {"a": 50, "b": 30, "c": 20}
    n = 60_000
    counts = draws(WeightedPolicy(weights), n, seed=7)
    observed = [counts[v] for v in weights]
    expected = [n * w / 100 for w in weights.values()]
    assert chisquare(observed, expected).pvalue > ALPHA


def test_zero_weight_is_idle_never_drawn_nor_a_fallback() -> None:
    """Regression (issue 13): weight 0 means registered but idle, so it is no fallback either."""
    policy = WeightedPolicy({"v1": 1, "idle": 0, "v2": 3})
    counts = draws(policy, 5000, seed=3)
    assert counts["idle"] == 0
    plans = {policy.plan(CTX, Random(seed)).versions for seed in range(50)}
    assert plans == {("v1", "v2"), ("v2", "v1")}
    assert policy.weights() == {"v1": 0.25, "idle": 0.0, "v2": 0.75}


def test_without_spill_a_plan_is_its_one_version() -> None:
    policy = WeightedPolicy({"cand": 10, "base": 90}, spill=False)
    plans = {policy.plan(CTX, Random(seed)).versions for seed in range(50)}
    assert plans == {("cand",), ("base",)}


def test_fallback_order_is_heaviest_first_without_the_chosen() -> None:
    policy = WeightedPolicy({"a": 1, "b": 5, "c": 3})
    plans = {policy.plan(CTX, Random(s)).versions for s in range(50)}
    assert plans == {("a", "b", "c"), ("b", "c", "a"), ("c", "b", "a")}


def test_seeded_choice_is_deterministic() -> None:
    policy = WeightedPolicy({"v1": 70, "v2": 30})
    assert draws(policy, 1000, seed=42) == draws(policy, 1000, seed=42)


def test_single_version_and_all_zero() -> None:
    assert WeightedPolicy({"only": 5}).plan(CTX, Random()).versions == ("only",)
    with pytest.raises(ValueError, match="positive weight"):
        WeightedPolicy({"a": 0})
