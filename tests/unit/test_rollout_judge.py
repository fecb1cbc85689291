"""The canary judge as a table: every rule, its precedence, manual actions, warm-up and records."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from typing import Any

import pytest

from gateway.canary import (
    Analysis,
    ArmCounts,
    CanarySettings,
    CanaryState,
    Evidence,
    Guardrails,
    InvalidTransition,
    Step,
    current_weight,
    decide,
    initial_state,
    pause,
    promote,
    resume,
    rollback,
    snapshot,
    validate_canary,
)
from gateway.canary.judge import errors_safe_log_e
from gateway.canary.state import Status
from gateway.canary.stats import EProcess, abs_prior_b, below_log_e

T0 = 1000.0
NO_WARMUP = Analysis(warmup_requests=0, warmup_s=0, metric="latency")  # m = 2 (errors, latency)
S = CanarySettings(
    "v1",
    "v2",
    steps=(Step(10, 100, 60, 600), Step(50, 100, 60, 600)),
    analysis=NO_WARMUP,
)


def arm(n: int, failures: int = 0, slow: int = 0) -> ArmCounts:
    return ArmCounts(n, failures, n - failures, slow)


def e_value(value: float, kind: str) -> EProcess:
    base = EProcess.harm() if kind == "harm" else EProcess.safety(1.5)
    return replace(base, log_terms=(math.log(value),) * len(base.thetas))


QUIET = Evidence(bucket=0, start=T0 + 50, candidate=arm(10), baseline=arm(90))

# Each condition, when present, makes one rule's premise true (see build()).
CONDITIONS = {
    "streak": "the bucket ends a run of 5 candidate failures",
    "streak4": "a run of 4 candidate failures (limit 5), in a bucket where the baseline failed a lot",
    "early_errors": "a third of the step's first 15 candidate requests failed (cap from 20)",
    "error_cap": "the step's candidate error rate is 30% after 200 requests",
    "srm": "the settled split is 25% against a configured 10%",
    "harm_errors": "harm e-value on errors is 100 (threshold 2/0.05 = 40)",
    "harm_slow": "harm e-value on latency is 100",
    "safe": "both safety e-values are 100 (threshold 20)",
    "safe_errors": "only the error safety e-value is 100",
    "enough": "the step has 200 candidate requests (min_samples 100)",
    "min_duration": "70 s into the step (min_duration 60 s)",
    "max_duration": "700 s into the step (max_duration 600 s)",
    "last": "the canary is in its last step",
}


def build(
    conditions: set[str], settings: CanarySettings = S
) -> tuple[CanaryState, Evidence, float]:
    assert conditions <= CONDITIONS.keys()
    state = initial_state(settings, T0)
    if "last" in conditions:
        state = replace(state, step=len(settings.steps) - 1)
    changes: dict[str, Any] = {}
    if "enough" in conditions:
        changes |= {"step_candidate": arm(200), "step_baseline": arm(1800)}
    if "error_cap" in conditions:
        changes |= {"step_candidate": arm(200, 60), "step_baseline": arm(1800)}
    if "early_errors" in conditions:
        changes |= {"step_candidate": arm(5, 5), "step_baseline": arm(45)}
    if "srm" in conditions:
        changes |= {"srm_candidate": 500, "srm_baseline": 1500}
    for name in ("harm_errors", "harm_slow"):
        if name in conditions:
            changes[name] = e_value(100, "harm")
    if "safe" in conditions or "safe_errors" in conditions:
        changes["safe_errors"] = e_value(100, "safe")
    if "safe" in conditions:
        changes["safe_slow"] = e_value(100, "safe")
    state = replace(state, **changes)
    share = round(settings.weight(state.step))  # a quiet bucket that matches the configured split
    evidence = replace(QUIET, candidate=arm(share), baseline=arm(100 - share))
    if "streak" in conditions:
        evidence = replace(evidence, candidate=arm(10, 5), consecutive_failures=5)
    if "streak4" in conditions:
        evidence = replace(
            evidence, candidate=arm(10, 4), baseline=arm(90, 30), consecutive_failures=4
        )
    now = T0 + 30
    if "min_duration" in conditions:
        now = T0 + 70
    if "max_duration" in conditions:
        now = T0 + 700
    return state, evidence, now


EVERYTHING = {"streak", "error_cap", "srm", "harm_errors", "harm_slow", "safe", "enough"}
EVERYTHING |= {"max_duration"}

# (conditions, settings, status before, expected (action, rule, status after) or None)
ROLLBACK = "rolled_back"
TABLE: list[tuple[str, set[str], CanarySettings, Status, tuple[str, str, str] | None]] = [
    # precedence: each row removes the winner of the row above
    ("guardrail streak beats all", EVERYTHING, S, "progressing",
     ("rollback", "guardrail.consecutive_failures", ROLLBACK)),
    ("error cap beats srm", EVERYTHING - {"streak"}, S, "progressing",
     ("rollback", "guardrail.max_error_rate", ROLLBACK)),
    ("srm beats harm", EVERYTHING - {"streak", "error_cap"}, S, "progressing",
     ("srm_freeze", "srm", "paused")),
    ("harm errors beats safety", {"harm_errors", "harm_slow", "safe", "enough", "max_duration"},
     S, "progressing", ("rollback", "harm.errors", ROLLBACK)),
    ("harm latency beats safety", {"harm_slow", "safe", "enough", "max_duration"}, S,
     "progressing", ("rollback", "harm.latency", ROLLBACK)),
    ("safety beats max_duration", {"safe", "enough", "max_duration"}, S, "progressing",
     ("advance", "safety", "progressing")),
    ("safety in the last step promotes", {"safe", "enough", "min_duration", "last"}, S,
     "progressing", ("promote", "safety", "promoted")),
    ("max_duration holds", {"max_duration"}, S, "progressing",
     ("hold", "max_duration.hold", "paused")),
    ("max_duration rolls back", {"max_duration", "safe"},
     replace(S, on_inconclusive="rollback"), "progressing",
     ("rollback", "max_duration.rollback", ROLLBACK)),
    # premises of the safety rule, one missing at a time
    ("safety before min_duration", {"safe", "enough"}, S, "progressing", None),
    ("safety without min_samples", {"safe", "min_duration"}, S, "progressing", None),
    ("latency not proven safe", {"safe_errors", "enough", "min_duration"}, S, "progressing", None),
    ("tail test off: errors suffice", {"safe_errors", "enough", "min_duration"},
     replace(S, analysis=replace(NO_WARMUP, metric="none")), "progressing",
     ("advance", "safety", "progressing")),
    ("tail test off: latency harm ignored", {"harm_slow"},
     replace(S, analysis=replace(NO_WARMUP, metric="none")), "progressing", None),
    ("nothing holds", set(), S, "progressing", None),
    ("guardrails below their limits", {"streak4", "early_errors"}, S, "progressing", None),
    # paused: only guardrails and harm run
    ("paused: guardrail", {"streak", "safe", "enough", "max_duration"}, S, "paused",
     ("rollback", "guardrail.consecutive_failures", ROLLBACK)),
    ("paused: harm", {"harm_errors", "srm"}, S, "paused", ("rollback", "harm.errors", ROLLBACK)),
    ("paused: no advance, srm or timeout", {"srm", "safe", "enough", "max_duration"}, S,
     "paused", None),
    # terminal states ignore evidence
    ("promoted is final", EVERYTHING, S, "promoted", None),
    ("rolled back is final", EVERYTHING, S, "rolled_back", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("conditions", "settings", "status", "expected"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_rules_and_precedence(
    conditions: set[str],
    settings: CanarySettings,
    status: Status,
    expected: tuple[str, str, str] | None,
) -> None:
    state, evidence, now = build(conditions, settings)
    state = replace(state, status=status)
    new, record = decide(settings, state, evidence, now)
    if expected is None:
        assert record is None
        assert new.status == state.status and new.generation == state.generation
        return
    assert record is not None
    assert (record.action, record.rule, new.status) == expected
    assert new.generation == state.generation + 1 == record.generation
    assert record.status == new.status and record.time == now
    json.dumps(record.to_dict(), allow_nan=False)


def test_harm_threshold_is_bonferroni_and_inclusive() -> None:
    state = initial_state(S, T0)
    at = replace(state, harm_errors=e_value(40, "harm"))
    below = replace(state, harm_errors=e_value(39.9, "harm"))
    assert decide(S, at, None, T0 + 1)[1] is not None
    assert decide(S, below, None, T0 + 1)[1] is None
    one_metric = replace(S, analysis=replace(NO_WARMUP, metric="none"))
    assert decide(one_metric, replace(state, harm_errors=e_value(20, "harm")), None, T0)[1]


def test_advance_resets_the_step_and_keeps_harm() -> None:
    state, evidence, now = build({"safe", "enough", "min_duration", "harm_slow"} - {"harm_slow"})
    state = replace(state, harm_errors=e_value(7, "harm"))
    new, record = decide(S, state, evidence, now)
    assert record is not None and record.action == "advance"
    assert (record.step_from, record.step_to, record.weight_from, record.weight_to) == (
        0,
        1,
        10,
        50,
    )
    assert new.step == 1 and new.step_started_at == now
    assert new.step_candidate == ArmCounts() and new.srm_candidate == 0
    assert new.safe_errors == EProcess.safety(1.5)
    assert new.harm_errors.log_value() == pytest.approx(math.log(7))
    assert new.total_candidate.requests == evidence.candidate.requests


def test_record_carries_counts_estimates_and_thresholds() -> None:
    state, evidence, now = build({"harm_errors", "enough"})
    state = replace(state, step_candidate=arm(200, 8, 20), step_baseline=arm(1800, 36, 90))
    _, record = decide(S, state, evidence, now)
    assert record is not None
    snap = record.to_dict()["snapshot"]
    assert snap["step_candidate"] == {
        **asdict(ArmCounts()),
        **{"requests": 210, "failures": 8, "latency_n": 202, "slow": 20},
    }
    assert snap["error_rate_candidate"] == pytest.approx(8 / 210)
    assert snap["theta_errors"] == pytest.approx((8 / 210) / (36 / 1890))
    assert snap["slow_rate_candidate"] == pytest.approx(20 / 202)
    assert snap["e_harm_errors"] == pytest.approx(100)
    assert snap["harm_threshold"] == pytest.approx(40)
    assert snap["safe_threshold"] == pytest.approx(20)
    assert snap["srm_expected_share"] == 0.1
    assert 8 / 210 < snap["error_ucb_candidate"] < 0.2
    assert record.weight_to == 0 and "harm proven on errors" in record.message


def test_srm_counts_skip_the_bucket_straddling_a_step_change() -> None:
    state = initial_state(S, T0)
    early = Evidence(0, T0, arm(500), arm(500))  # routing table not yet updated
    late = Evidence(1, T0 + 10, arm(10), arm(90))
    state, _ = decide(S, state, early, T0 + 10)
    state, _ = decide(S, state, late, T0 + 20)
    assert (state.srm_candidate, state.srm_baseline) == (10, 90)
    assert state.step_candidate.requests == 510  # errors and guardrails still see everything


def test_no_traffic_never_promotes() -> None:
    settings = replace(S, steps=(Step(10, 1, 0, 600),))
    state = initial_state(settings, T0)
    for i in range(59):  # ten minutes of empty buckets, then time-only checks
        state, record = decide(
            settings, state, Evidence(i, T0 + 10 * i, arm(0), arm(0)), T0 + 10 * i
        )
        assert record is None
    state, record = decide(settings, state, None, T0 + 600)
    assert record is not None and record.rule == "max_duration.hold"
    assert state.status == "paused" and state.pause_reason == "inconclusive"


def test_zero_errors_advance_only_on_the_absolute_margin() -> None:
    settings = replace(S, analysis=replace(NO_WARMUP, metric="none"), steps=(Step(10, 1, 0, 1e6),))
    state = initial_state(settings, T0)
    for i in range(200):  # error-free traffic, 10 candidate requests per bucket
        state, record = decide(settings, state, Evidence(i, T0 + i, arm(10), arm(90)), T0 + i + 1)
        if record is not None:
            break
    assert record is not None and record.action == "promote"
    # ≈ 1,280 clean requests at δ = 0.5 pp: the absolute route has α/2 and allows for the
    # baseline's own uncertainty (a lower confidence bound at α/4), so it needs more than the
    # ≈ 1,100 of the old plug-in route
    assert 1200 <= state.step_candidate.requests <= 1350
    assert record.snapshot.e_safe_errors_rel == 1.0  # no events: the relative test is silent
    no_abs = replace(settings, analysis=replace(settings.analysis, error_margin_abs=0.0))
    state = initial_state(no_abs, T0)
    for i in range(2000):
        state, record = decide(no_abs, state, Evidence(i, T0 + i, arm(10), arm(90)), T0 + i + 1)
        assert record is None


def test_warmup_excludes_latency_only() -> None:
    slow_bucket = (arm(10, 1, slow=2), arm(90, 1, slow=4))

    def run(warmup_requests: int, warmup_s: float) -> tuple[list[bool], CanaryState]:
        settings = replace(S, analysis=Analysis(warmup_requests=warmup_requests, warmup_s=warmup_s))
        state, applied = initial_state(settings, T0), []
        for i in range(5):  # buckets start at +0, +10, ... +40 s with 10 candidate requests each
            before = state.harm_slow
            state, _ = decide(settings, state, Evidence(i, T0 + 10 * i, *slow_bucket), T0 + 10 * i)
            applied.append(state.harm_slow != before)
        return applied, state

    by_seconds, state = run(warmup_requests=10, warmup_s=35)
    assert by_seconds == [False, False, False, False, True]
    by_requests, state = run(warmup_requests=30, warmup_s=0)
    assert by_requests == [False, False, False, True, True]
    assert state.step_candidate.latency_n == 2 * 9 and state.step_candidate.slow == 2 * 2
    assert state.step_candidate.failures == 5  # errors count from the first request
    assert state.harm_errors.events == 10
    assert state.total_candidate.slow == 10  # totals keep everything, for the record


def test_replayed_buckets_are_ignored() -> None:
    state = initial_state(S, T0)
    ev = Evidence(5, T0, arm(10, 2), arm(90, 1))
    once, _ = decide(S, state, ev, T0 + 10)
    twice, record = decide(S, once, ev, T0 + 10)
    assert twice is once and record is None
    older, _ = decide(S, once, replace(ev, bucket=4), T0 + 10)
    assert older is once


def test_resume_from_storage_matches_an_uninterrupted_run() -> None:
    buckets = [
        Evidence(i, T0 + 10 * i, arm(12, i % 3, slow=i % 2), arm(88, 1, slow=4)) for i in range(60)
    ]
    straight = initial_state(S, T0)
    for i, ev in enumerate(buckets):
        straight, _ = decide(S, straight, ev, T0 + 10 * i + 10)
    resumed = initial_state(S, T0)
    for i, ev in enumerate(buckets[:25]):
        resumed, _ = decide(S, resumed, ev, T0 + 10 * i + 10)
    resumed = CanaryState.from_dict(json.loads(json.dumps(resumed.to_dict())))
    for i, ev in enumerate(buckets[20:], start=20):  # overlaps: 20–24 are replays
        resumed, _ = decide(S, resumed, ev, T0 + 10 * i + 10)
    assert resumed == straight


MANUAL = [
    (pause, "progressing", "paused", "pause"),
    (resume, "paused", "progressing", "resume"),
    (promote, "progressing", "promoted", "promote"),
    (promote, "paused", "promoted", "promote"),
    (rollback, "progressing", "rolled_back", "rollback"),
    (rollback, "paused", "rolled_back", "rollback"),
]


@pytest.mark.parametrize(("action", "before", "after", "name"), MANUAL)
def test_manual_actions(action: Any, before: Status, after: str, name: str) -> None:
    state = replace(initial_state(S, T0), status=before, generation=4)
    new, record = action(S, state, T0 + 5, note="operator said so")
    assert (new.status, record.action, record.rule) == (after, name, "manual")
    assert new.generation == 5 == record.generation
    assert record.message == "operator said so"
    assert (
        record.weight_to
        == {"paused": 10, "progressing": 10, "promoted": 100, "rolled_back": 0}[after]
    )


@pytest.mark.parametrize(
    ("action", "status"),
    [
        (pause, "paused"),
        (resume, "progressing"),
        *[(a, s) for a in (pause, resume, promote, rollback) for s in ("promoted", "rolled_back")],
    ],
)
def test_manual_actions_refuse_impossible_transitions(action: Any, status: Status) -> None:
    with pytest.raises(InvalidTransition):
        action(S, replace(initial_state(S, T0), status=status), T0)


def test_resume_restarts_the_step() -> None:
    state, _, _ = build({"enough", "safe", "harm_errors"})
    state, _ = pause(S, state, T0 + 10)
    assert state.pause_reason == "manual"
    state = replace(state, harm_errors=e_value(3, "harm"))
    state, record = resume(S, state, T0 + 100)
    assert record.action == "resume" and state.status == "progressing"
    assert state.step_started_at == T0 + 100 and state.step_candidate == ArmCounts()
    assert state.safe_errors == EProcess.safety(1.5) and state.pause_reason is None
    assert state.harm_errors.log_value() == pytest.approx(math.log(3))


def test_weights_by_status() -> None:
    state = initial_state(S, T0)
    assert current_weight(S, state) == 10
    assert current_weight(S, replace(state, step=1, status="paused")) == 50
    assert current_weight(S, replace(state, status="promoted")) == 100
    assert current_weight(S, replace(state, status="rolled_back")) == 0
    assert snapshot(S, state, T0).srm_p_value is None


def test_evidence_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        Evidence(0, T0, ArmCounts(5, 6, 0, 0), arm(5))
    with pytest.raises(ValueError):
        Evidence(0, T0, arm(5), ArmCounts(5, 0, 2, 3))
    with pytest.raises(ValueError):
        Evidence(0, T0, arm(5), ArmCounts(-1, 0, 0, 0))


# --- validate_canary -------------------------------------------------------------------------

GOOD = CanarySettings("v1", "v2")
VALIDATE = [
    ("default settings", GOOD, None, []),
    ("candidate equals baseline", replace(GOOD, candidate="v1"), None, ["candidate:"]),
    ("steps must increase", replace(GOOD, steps=(Step(25), Step(10))), None, ["steps[1].weight"]),
    ("weight out of range", replace(GOOD, steps=(Step(0),)), None, ["steps[0].weight"]),
    ("100% step", replace(GOOD, steps=(Step(50), Step(100))), None, ["steps[1].weight"]),
    ("no steps", replace(GOOD, steps=()), None, ["steps:"]),
    ("min_samples 0", replace(GOOD, steps=(Step(10, min_samples=0),)), None,
     ["steps[0].min_samples"]),
    ("min > max duration", replace(GOOD, steps=(Step(10, 100, 900, 600),)), None,
     ["steps[0].max_duration_s"]),
    ("alpha out of range", replace(GOOD, analysis=Analysis(alpha_harm=0.5)), None,
     ["analysis.alpha_harm"]),
    ("srm alpha", replace(GOOD, srm_alpha=0.0), None, ["srm_alpha"]),
    ("margin ≤ 1", replace(GOOD, analysis=Analysis(error_margin_rel=1.0)), None,
     ["analysis.error_margin_rel"]),
    ("percentile", replace(GOOD, analysis=Analysis(slow_percentile=100)), None,
     ["analysis.slow_percentile"]),
    ("guardrails", replace(GOOD, guardrails=Guardrails(0, 0.0, 0)), None,
     ["guardrails.consecutive_failures", "guardrails.max_error_rate", "guardrails.min_requests"]),
    ("warm-up longer than a step", replace(GOOD, steps=(Step(10, 100, 0, 50),)), None,
     ["steps[0].max_duration_s"]),
    ("fits at 20 req/s", GOOD, 20.0, []),
    ("too slow at 2 req/s", GOOD, 2.0,
     ["steps[0].max_duration_s", "steps[1].max_duration_s", "steps[2].max_duration_s"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "rate", "expected"), [r[1:] for r in VALIDATE], ids=[r[0] for r in VALIDATE]
)
def test_validate_canary(settings: CanarySettings, rate: float | None, expected: list[str]) -> None:
    problems = validate_canary(settings, rate_rps=rate, baseline_error_rate=0.02)
    assert [p.split(":")[0] for p in problems] == [e.rstrip(":") for e in expected], problems


# --- incidents on both versions (guardrails compare with the baseline) -------------------------


def test_minimal_incident_pauses_instead_of_rolling_back() -> None:
    """Issue 13's minimal case: one bucket, candidate 6/20 failures, baseline 54/180, a run of 6
    candidate failures. The old guardrail rolled back; the baseline fails as often, so pause."""
    state = initial_state(S, T0)
    ev = Evidence(0, T0, arm(20, 6), arm(180, 54), consecutive_failures=6)
    new, record = decide(S, state, ev, T0 + 10)
    assert record is not None and new.status == "paused"
    assert (record.action, record.rule, new.pause_reason) == (
        "incident",
        "incident.consecutive_failures",
        "incident",
    )
    assert "baseline fails too" in record.message
    assert new.harm_errors.value() < S.harm_threshold


def test_incident_ends_and_the_step_restarts_then_a_lone_failure_still_rolls_back() -> None:
    state = initial_state(S, T0)
    state, record = decide(S, state, Evidence(0, T0, arm(10, 10), arm(90, 90), 10), T0 + 10)
    assert record is not None and state.pause_reason == "incident"
    state, record = decide(S, state, Evidence(1, T0 + 10, arm(10, 6), arm(90, 50), 3), T0 + 20)
    assert record is None and state.status == "paused"  # still failing together: stay paused
    state, record = decide(S, state, Evidence(2, T0 + 20, arm(10), arm(90, 1)), T0 + 30)
    assert record is not None and (record.action, record.rule) == ("resume", "incident.end")
    assert state.status == "progressing" and state.step_candidate == ArmCounts()
    state, record = decide(S, state, Evidence(3, T0 + 30, arm(10, 5), arm(90, 1), 5), T0 + 40)
    assert record is not None and (record.action, record.rule) == (
        "rollback",
        "guardrail.consecutive_failures",
    )


def test_error_cap_compares_with_the_baseline_in_the_step() -> None:
    state = replace(initial_state(S, T0), step_candidate=arm(40, 12))
    both = replace(state, step_baseline=arm(360, 100))
    _, record = decide(S, both, None, T0 + 10)
    assert record is not None and record.rule == "incident.max_error_rate"
    alone = replace(state, step_baseline=arm(360, 4))
    _, record = decide(S, alone, None, T0 + 10)
    assert record is not None and record.rule == "guardrail.max_error_rate"


def test_a_candidate_much_worse_during_an_incident_is_still_rolled_back_by_harm() -> None:
    state = initial_state(S, T0)
    state, record = decide(S, state, Evidence(0, T0, arm(10, 10), arm(90, 30), 10), T0 + 10)
    assert record is not None and state.pause_reason == "incident"
    for i in range(1, 30):
        state, record = decide(S, state, Evidence(i, T0 + 10 * i, arm(10, 10), arm(90, 27), 10), T0)
        if record is not None:
            break
    assert record is not None and record.rule == "harm.errors" and state.status == "rolled_back"


# --- every route valid at any time ------------------------------------------------------------


def test_absolute_route_allows_for_the_baselines_uncertainty() -> None:
    """Issue 13: candidate 0/216 failures, baseline 3/185 promoted on the plug-in route (p̂_B
    taken as the truth). With a confidence bound for p_B that is far from enough."""
    settings = replace(S, analysis=replace(NO_WARMUP, metric="none"), steps=(Step(50, 1, 0, 1e6),))
    state = replace(initial_state(settings, T0), step_candidate=arm(216), step_baseline=arm(185, 3))
    plug_in = below_log_e(0, 216, 3 / 185 + 0.005, abs_prior_b(0.005))
    assert math.exp(plug_in) >= 2 * settings.safe_threshold  # the old route: promoted
    combined, _, absolute = errors_safe_log_e(settings, state)
    assert absolute < plug_in and combined < math.log(settings.safe_threshold)
    assert decide(settings, state, None, T0 + 21)[1] is None


def test_ttft_is_judged_beside_latency_with_alpha_split_three_ways() -> None:
    both = replace(S, analysis=replace(NO_WARMUP, metric="both"))
    assert both.harm_threshold == pytest.approx(60)
    state = initial_state(both, T0)
    hidden = ArmCounts(10, 0, 10, 1, 10, 8)  # latency fine, TTFT much worse than the baseline
    for i in range(40):
        ev = Evidence(i, T0 + 10 * i, hidden, ArmCounts(90, 0, 90, 5, 90, 5))
        state, record = decide(both, state, ev, T0 + 10 * i + 10)
        if record is not None:
            break
    assert record is not None and record.rule == "harm.ttft"
    latency_only = replace(S, analysis=replace(NO_WARMUP, metric="latency"))
    state = initial_state(latency_only, T0)
    for i in range(40):
        ev = Evidence(i, T0 + 10 * i, hidden, ArmCounts(90, 0, 90, 5, 90, 5))
        state, record = decide(latency_only, state, ev, T0 + 10 * i + 10)
        assert record is None or record.rule != "harm.ttft"


def test_sequential_srm_freezes_and_counts_sessions_with_a_sticky_key() -> None:
    state = initial_state(S, T0)
    for i in range(1, 30):  # the candidate gets half its 10 % share
        state, record = decide(S, state, Evidence(i, T0 + 10 * i, arm(10), arm(190)), T0 + 10 * i)
        if record is not None:
            break
    assert record is not None and record.rule == "srm" and i <= 7  # within about a minute
    assert "requests" in record.message
    sticky = initial_state(S, T0)
    for i in range(1, 30):  # many requests per session: requests skewed, sessions on share
        c, b = ArmCounts(40, sessions=2), ArmCounts(60, sessions=18)
        sticky, record = decide(S, sticky, Evidence(i, T0 + 10 * i, c, b, sessions=True), T0)
        assert record is None or record.rule != "srm"
    assert sticky.srm_sessions and (sticky.srm_candidate, sticky.srm_baseline) == (58, 522)
    assert snapshot(S, sticky, T0).srm_unit == "sessions"


def test_validate_refuses_step_floors_below_the_srm_need() -> None:
    """Issue 13's loosest config (one 50 % step, min_samples 1, min_duration_s 0) was accepted."""
    from gateway.canary.validate import srm_floor

    loose = replace(S, steps=(Step(50, 1, 0, 600),))
    problems = validate_canary(loose)
    assert len(problems) == 1 and problems[0].startswith("steps[0].min_samples: 1 is below")
    assert "sample-ratio check" in problems[0]
    need = srm_floor(0.5, S.srm_alpha)
    assert 30 < need < 100
    assert validate_canary(replace(S, steps=(Step(50, need, 0, 600),))) == []
    assert srm_floor(0.5, 0.01) < need  # a looser SRM level needs less evidence
