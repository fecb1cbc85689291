"""Water-filling shares under floors and ceilings, and the shared clock."""

from __future__ import annotations

from random import Random

import pytest

from gateway.infra.clock import SharedClock
from gateway.routing.shares import fair_shares, waterfill


def test_proportional_when_no_bound_binds() -> None:
    assert waterfill(1.0, {"a": 2, "b": 1, "c": 1}, {}, {}) == pytest.approx(
        {"a": 0.5, "b": 0.25, "c": 0.25}
    )


def test_floors_lift_and_ceilings_cut() -> None:
    shares = waterfill(1.0, {"a": 1, "b": 1, "c": 0.001}, dict.fromkeys("abc", 0.1), {"a": 0.3})
    assert shares == pytest.approx({"a": 0.3, "b": 0.6, "c": 0.1})


def test_leftover_goes_to_the_others_when_weighted_versions_are_capped() -> None:
    shares = waterfill(1.0, {"a": 1, "b": 0, "c": 0}, dict.fromkeys("abc", 0.1), {"a": 0.4})
    assert shares == pytest.approx({"a": 0.4, "b": 0.3, "c": 0.3})


def test_random_inputs_always_respect_bounds_and_sum() -> None:
    rng = Random(4)
    for _ in range(500):
        names = [f"v{i}" for i in range(rng.randint(1, 6))]
        floor = rng.choice([0.0, 0.02, 0.05]) if len(names) * 0.05 <= 1 else 0.0
        ceilings = {v: rng.choice([1.0, 0.5, 0.3]) for v in names}
        if sum(ceilings.values()) < 1:
            continue
        raw = {v: rng.choice([0.0, rng.random()]) for v in names}
        shares = waterfill(1.0, raw, dict.fromkeys(names, floor), ceilings)
        assert sum(shares.values()) == pytest.approx(1.0)
        for v in names:
            assert floor - 1e-9 <= shares[v] <= ceilings[v] + 1e-9


def test_fair_shares_split_equally_under_ceilings() -> None:
    assert fair_shares(("a", "b", "c"), {"c": 0.2}) == pytest.approx({"a": 0.4, "b": 0.4, "c": 0.2})


def test_shared_clock_follows_the_store_and_ignores_jitter() -> None:
    mono = [10.0]
    clock = SharedClock(lambda: mono[0], lambda: 1000.0)
    assert clock.now() == 1000.0
    clock.sync(1500.0, 10.0, 10.0)
    assert clock.now() == 1500.0
    clock.sync(1500.01, 10.0, 10.0)  # round-trip noise: ignored
    assert clock.now() == 1500.0
    mono[0] = 12.0  # moves only with the monotonic clock
    assert clock.now() == 1502.0
