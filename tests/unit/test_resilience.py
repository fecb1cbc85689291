"""Retry budget, ejection timers, probes, slow start and panic, with an injected clock."""

from __future__ import annotations

from random import Random

import pytest

from gateway.config.routes import Ejection, Retry
from gateway.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamReset,
    UpstreamStatus,
    UpstreamTimeout,
)
from gateway.proxy.attempts import attempt_order, retry_kind
from gateway.resilience.budget import RetryBudget
from gateway.resilience.health import HealthTable
from tests.support import ManualClock

EJ = Ejection(consecutive_failures=3, base_s=10, max_s=60, slow_start_s=20)
PLAN = ("v1", "v2", "v3")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def table(clock: ManualClock) -> HealthTable:
    return HealthTable(clock, Random(1))


def fail(table: HealthTable, vid: str, times: int, cfg: Ejection = EJ) -> None:
    for _ in range(times):
        assert table.begin("chat", vid)
        table.record("chat", vid, True, cfg, PLAN)


def test_retry_budget_floor_and_share() -> None:
    budget, retry = RetryBudget(), Retry(budget_percent=20, min_retries=3)
    budget.requests = 5
    budget.retries = 2
    assert budget.allows(retry)  # floor of 3 retries in flight
    budget.retries = 3
    assert not budget.allows(retry)
    budget.requests = 100
    budget.retries = 19
    assert budget.allows(retry)  # 20 % of 100 in flight
    budget.retries = 20
    assert not budget.allows(retry)


def test_retry_kinds_and_order() -> None:
    assert retry_kind(UpstreamConnectError("x")) == "connect"
    assert retry_kind(UpstreamReset("x")) == "reset"
    assert retry_kind(UpstreamTimeout("x")) == "timeout"
    assert retry_kind(UpstreamStatus(502, None)) == "5xx"
    assert retry_kind(UpstreamStatus(429, 0.5)) == "429"
    assert retry_kind(UpstreamError("redirect")) is None
    assert attempt_order("v2", ("v2", "v1", "v3"), None) == ("v2", "v1", "v3")
    assert attempt_order("v2", ("v2", "v1", "v3"), ("v3", "v2")) == ("v2", "v3")


def test_consecutive_failures_eject_and_backoff_doubles(
    table: HealthTable, clock: ManualClock
) -> None:
    ejected: list[str] = []
    table.on_eject = lambda m, v: ejected.append(v)
    assert table.order("chat", PLAN, EJ) == PLAN
    fail(table, "v2", 2)
    table.record("chat", "v2", False, EJ)  # a success resets the streak
    fail(table, "v2", 2)
    assert table.order("chat", PLAN, EJ) == PLAN
    fail(table, "v2", 1)
    assert ejected == ["v2"]
    first = table.model("chat", PLAN).versions["v2"].ejected_until - clock.now
    assert 9.0 <= first <= 11.0  # base_s ± 10 % jitter
    assert table.order("chat", PLAN, EJ) == ("v1", "v3")
    clock.now += first + 0.01  # half-open: one probe
    assert table.order("chat", PLAN, EJ) == PLAN  # v2 is admitted again, for one probe
    assert table.begin("chat", "v2") and not table.begin("chat", "v2")
    table.record("chat", "v2", True, EJ)  # the probe fails: ejected again, twice as long
    second = table.model("chat", PLAN).versions["v2"].ejected_until - clock.now
    assert 18.0 <= second <= 22.0 and ejected == ["v2", "v2"]


def test_probe_success_readmits_with_a_slow_start(table: HealthTable, clock: ManualClock) -> None:
    fail(table, "v2", 3)
    clock.now += 11.1
    table.order("chat", PLAN, EJ)
    assert table.begin("chat", "v2")
    table.record("chat", "v2", False, EJ)
    firsts = []
    for step in range(4):
        clock.now += 5.0 if step else 0.0
        draws = [table.order("chat", ("v2", "v1", "v3"), EJ)[0] for _ in range(2000)]
        firsts.append(draws.count("v2") / len(draws))
    # ramp: 10 % floor at re-admission, then 25 %, 50 %, 75 % of slow_start_s = 20 s
    assert firsts[0] == pytest.approx(0.10, abs=0.03)
    assert firsts[1] == pytest.approx(0.25, abs=0.04)
    assert firsts[2] == pytest.approx(0.50, abs=0.04)
    assert firsts[3] == pytest.approx(0.75, abs=0.04)
    clock.now += 5.1
    assert table.order("chat", ("v2", "v1", "v3"), EJ) == ("v2", "v1", "v3")
    assert table.model("chat", PLAN).troubled == 0  # back on the fast path


def test_last_admitted_version_is_never_ejected_panic_route(table: HealthTable) -> None:
    panics: list[bool] = []
    table.on_panic = lambda m, on: panics.append(on)
    fail(table, "v1", 3)
    fail(table, "v2", 3)
    fail(table, "v3", 5)
    mh = table.model("chat", PLAN)
    assert mh.versions["v3"].ejected_until == 0.0 and mh.panic and panics == [True]
    assert table.order("chat", PLAN, EJ) == PLAN  # panic: route ignores health
    table.record("chat", "v3", False, EJ)
    assert not mh.panic and panics == [True, False]


def test_panic_fail_lets_one_probe_per_second(table: HealthTable, clock: ManualClock) -> None:
    cfg = EJ.model_copy(update={"panic": "fail"})
    fail(table, "v1", 3, cfg)
    fail(table, "v2", 3, cfg)
    fail(table, "v3", 3, cfg)
    assert table.order("chat", PLAN, cfg) is None
    clock.now += 1.01
    assert table.order("chat", PLAN, cfg) == ("v1",)
    assert table.order("chat", PLAN, cfg) is None


def test_backoff_resets_after_a_long_healthy_spell(table: HealthTable, clock: ManualClock) -> None:
    fail(table, "v2", 3)
    clock.now += 11.1
    table.order("chat", PLAN, EJ)
    table.begin("chat", "v2")
    table.record("chat", "v2", False, EJ)
    clock.now += 61.0  # longer than max_s
    fail(table, "v2", 3)
    again = table.model("chat", PLAN).versions["v2"].ejected_until - clock.now
    assert 9.0 <= again <= 11.0


def test_neutral_outcomes_do_not_count_and_disabled_ejection(table: HealthTable) -> None:
    for _ in range(10):
        table.begin("chat", "v2")
        table.record("chat", "v2", None, EJ)  # client error / cancel
    assert table.order("chat", PLAN, EJ) == PLAN
    off = EJ.model_copy(update={"enabled": False})
    fail(table, "v2", 10, off)
    assert table.order("chat", PLAN, off) == PLAN
