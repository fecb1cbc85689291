"""The canary judge: a pure state machine that a controller drives one time bucket at a time.

`decide(settings, state, evidence, now)` applies one bucket (idempotently: a bucket at or below
the cursor is ignored), then checks the rules in this order; the first that holds fires:

1. guardrail (candidate failures in a row, or the step's candidate error rate above the cap
   once it has `min_requests`), judged against the baseline in the same window: if the baseline
   fails too (`incident`) → pause (incident), else → rollback;
2. sample-ratio mismatch (the sequential SRM e-value ≥ 1/srm_alpha) → pause (srm);
3. a harm e-value ≥ m/α_harm (m = 1 + one per tail metric: latency, TTFT) → rollback;
4. every safety test passes, and min_samples, and min_duration → advance (promote after the
   last step);
5. max_duration → hold (pause, inconclusive) or rollback, per `on_inconclusive`;
6. otherwise nothing: no record is written (a status page reads `snapshot()` instead).

While paused only rules 1 and 3 run (rolling back stays possible, nothing advances). Paused for
an incident, rule 1 waits too (its runs and rates include the incident) and the incident's end
is checked: once the baseline's last bucket is back below half the guardrail cap the step's
analysis restarts (`resume`, rule `incident.end`) and the guardrails judge the next bucket.
Promoted and rolled-back canaries ignore evidence. Every transition increments `generation`
(the controller's compare-and-set token) and returns a `DecisionRecord`. Manual `pause`,
`resume`, `promote` and `rollback` are pure too; `resume` restarts the current step's analysis
window.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from gateway.canary.settings import CanarySettings
from gateway.canary.state import (
    TERMINAL,
    Action,
    ArmCounts,
    CanaryState,
    DecisionRecord,
    Evidence,
    PauseReason,
    Snapshot,
)
from gateway.canary.stats import (
    EProcess,
    abs_prior_b,
    below_log_e,
    capped_exp,
    lower_bound,
    poisson_sf,
    srm_log_e,
    srm_test,
    upper_bound,
)
from gateway.errors import GatewayError

SRM_SETTLE_S = 2.0  # buckets starting this soon after a step change skip the SRM counts
INCIDENT_SHARE = 0.5  # the baseline fails at ≥ this × the candidate's rate (at most the cap)
INCIDENT_P, INCIDENT_MIN_FAILURES = 1e-3, 3  # ... or far more often than before the window
PAUSE_REASONS: Mapping[str, PauseReason] = {
    "srm_freeze": "srm",
    "hold": "inconclusive",
    "pause": "manual",
    "incident": "incident",
}


class InvalidTransition(GatewayError):
    """A manual action that the canary's status does not allow (e.g. resuming a promoted one)."""

    status = 409
    type = "invalid_request_error"
    code = "invalid_transition"


@dataclass(frozen=True, slots=True)
class _Verdict:
    action: Action
    rule: str
    message: str


def initial_state(settings: CanarySettings, now: float) -> CanaryState:
    """A canary entering its first step at `now` (generation 1)."""
    an = settings.analysis
    return CanaryState(
        status="progressing",
        step=0,
        step_started_at=now,
        generation=1,
        cursor=-1,
        harm_errors=EProcess.harm(),
        harm_slow=EProcess.harm(),
        safe_errors=EProcess.safety(an.error_margin_rel),
        safe_slow=EProcess.safety(an.latency_margin_rel),
        harm_ttft=EProcess.harm(),
        safe_ttft=EProcess.safety(an.latency_margin_rel),
    )


def current_weight(settings: CanarySettings, state: CanaryState) -> float:
    """The candidate's configured share in percent: 0 after rollback, 100 after promotion."""
    if state.status == "rolled_back":
        return 0.0
    if state.status == "promoted":
        return 100.0
    return settings.weight(state.step)


def decide(
    settings: CanarySettings, state: CanaryState, evidence: Evidence | None, now: float
) -> tuple[CanaryState, DecisionRecord | None]:
    """Apply one bucket (or none: a time-only check) and fire the first rule that holds."""
    if state.status in TERMINAL:
        return state, None
    if evidence is not None:
        if evidence.bucket <= state.cursor:
            return state, None  # a replay: already applied
        state = _apply(settings, state, evidence)
    verdict = _verdict(settings, state, now)
    if verdict is None:
        return state, None
    return _transition(settings, state, verdict, now)


def _apply(settings: CanarySettings, state: CanaryState, ev: Evidence) -> CanaryState:
    an = settings.analysis
    c, b = ev.candidate, ev.baseline
    warm = (
        settings.latency_enabled
        and ev.start - state.step_started_at >= an.warmup_s
        and state.step_candidate.requests >= an.warmup_requests
    )
    settled = ev.start >= state.step_started_at + SRM_SETTLE_S
    harm_slow, safe_slow = state.harm_slow, state.safe_slow
    if warm and (c.slow or b.slow):
        harm_slow = harm_slow.update(c.latency_n, b.latency_n, c.slow, b.slow)
        safe_slow = safe_slow.update(c.latency_n, b.latency_n, c.slow, b.slow)
    harm_ttft, safe_ttft = state.harm_ttft, state.safe_ttft
    if warm and settings.ttft_enabled and (c.ttft_slow or b.ttft_slow):
        harm_ttft = harm_ttft.update(c.ttft_n, b.ttft_n, c.ttft_slow, b.ttft_slow)
        safe_ttft = safe_ttft.update(c.ttft_n, b.ttft_n, c.ttft_slow, b.ttft_slow)
    (n_c, k_c), (n_b, k_b) = c.error_units(ev.sessions), b.error_units(ev.sessions)
    srm_c, srm_b = n_c, n_b
    return CanaryState(  # built directly: dataclasses.replace is slow on this per-bucket path
        status=state.status,
        step=state.step,
        step_started_at=state.step_started_at,
        generation=state.generation,
        cursor=ev.bucket,
        harm_errors=state.harm_errors.update(n_c, n_b, k_c, k_b),
        harm_slow=harm_slow,
        safe_errors=state.safe_errors.update(n_c, n_b, k_c, k_b),
        safe_slow=safe_slow,
        harm_ttft=harm_ttft,
        safe_ttft=safe_ttft,
        step_candidate=state.step_candidate.plus(c, warm),
        step_baseline=state.step_baseline.plus(b, warm),
        total_candidate=state.total_candidate.plus(c),
        total_baseline=state.total_baseline.plus(b),
        srm_candidate=state.srm_candidate + (srm_c if settled else 0),
        srm_baseline=state.srm_baseline + (srm_b if settled else 0),
        srm_sessions=ev.sessions,
        streak=ev.consecutive_failures,
        pause_reason=state.pause_reason,
        last_candidate=c,
        last_baseline=b,
    )


def _verdict(settings: CanarySettings, state: CanaryState, now: float) -> _Verdict | None:
    checks = RULES if state.status == "progressing" else PAUSED_RULES
    for check in checks:
        verdict = check(settings, state, now)
        if verdict is not None:
            return verdict
    return None


def incident(
    settings: CanarySettings, candidate: ArmCounts, baseline: ArmCounts, before: ArmCounts
) -> bool:
    """Whether the baseline fails too in the same window: at least INCIDENT_SHARE × the
    candidate's failure rate there (or × the guardrail cap when that is lower), or improbably
    often for its own rate `before` the window (Poisson tail < INCIDENT_P: an incident that began
    late in the window, while a run of candidate failures filled it)."""
    cap = settings.guardrails.max_error_rate
    rate_b, rate_c = baseline.error_rate, candidate.error_rate
    if rate_b is None:
        return False
    if rate_b >= INCIDENT_SHARE * min(cap if rate_c is None else rate_c, cap):
        return True
    usual = (before.failures + 1) / (before.requests + 1)
    k = baseline.failures
    return k >= INCIDENT_MIN_FAILURES and poisson_sf(k, usual * baseline.requests) < INCIDENT_P


def _guardrail(settings: CanarySettings, state: CanaryState, now: float) -> _Verdict | None:
    g = settings.guardrails
    if state.pause_reason == "incident":
        return None  # runs and rates that include the incident: judged again once it ends
    if state.streak >= g.consecutive_failures:
        what = f"{state.streak} candidate failures in a row (limit {g.consecutive_failures})"
        base, before = state.last_baseline, state.total_baseline.minus(state.last_baseline)
        window = (state.last_candidate, base, before)  # the bucket the run ended in
        return _blame(settings, state, "guardrail.consecutive_failures", what, *window)
    sessions = state.srm_sessions  # with a sticky key the rate counts sessions, each once
    cand, base, total = (
        ArmCounts(*arm.error_units(sessions))
        for arm in (state.step_candidate, state.step_baseline, state.total_baseline)
    )
    if cand.requests >= g.min_requests and cand.failures > g.max_error_rate * cand.requests:
        unit = "sessions" if sessions else "requests"
        what = (
            f"candidate error rate {cand.failures}/{cand.requests} {unit} above the cap"
            f" {g.max_error_rate:.0%} (checked from {g.min_requests})"
        )
        window = (cand, base, total.minus(base))
        return _blame(settings, state, "guardrail.max_error_rate", what, *window)
    return None


def _blame(
    settings: CanarySettings,
    state: CanaryState,
    rule: str,
    what: str,
    candidate: ArmCounts,
    baseline: ArmCounts,
    before: ArmCounts,
) -> _Verdict | None:
    """Roll back for a guardrail, unless the baseline fails too in the same window (pause)."""
    if not incident(settings, candidate, baseline, before):
        return _Verdict("rollback", rule, what)
    if state.status == "paused":
        return None  # paused for another reason: harm can still roll back, nothing advances
    msg = (
        f"{what}, but the baseline fails too in the same window ({baseline.failures}/"
        f"{baseline.requests}): an incident on both versions, analysis paused until it ends"
    )
    return _Verdict("incident", rule.replace("guardrail", "incident"), msg)


def _incident_end(settings: CanarySettings, state: CanaryState, now: float) -> _Verdict | None:
    if state.pause_reason != "incident" or not state.last_baseline.requests:
        return None
    level = INCIDENT_SHARE * settings.guardrails.max_error_rate
    if (state.last_baseline.error_rate or 0.0) >= level:
        return None
    msg = (
        f"incident over: baseline {state.last_baseline.failures}/{state.last_baseline.requests}"
        f" failures in the last bucket (below {level:.0%}); the step's analysis restarts"
    )
    return _Verdict("resume", "incident.end", msg)


def _srm(settings: CanarySettings, state: CanaryState, now: float) -> _Verdict | None:
    share = settings.weight(state.step) / 100.0
    log_e = srm_log_e(state.srm_candidate, state.srm_baseline, share)
    if log_e < math.log(1.0 / settings.srm_alpha):
        return None
    unit = "sessions" if state.srm_sessions else "requests"
    total = state.srm_candidate + state.srm_baseline
    msg = (
        f"observed candidate share {state.srm_candidate / total:.2%} of {total} {unit}"
        f" vs configured {share:.2%} (SRM e-value {capped_exp(log_e):.3g}"
        f" ≥ {1 / settings.srm_alpha:g}): routing or attribution is broken, weights frozen"
    )
    return _Verdict("srm_freeze", "srm", msg)


def _harm(settings: CanarySettings, state: CanaryState, now: float) -> _Verdict | None:
    threshold = settings.harm_threshold
    tests = [("errors", state.harm_errors)]
    if settings.latency_enabled:
        tests.append(("latency" if settings.analysis.metric != "ttft" else "ttft", state.harm_slow))
    if settings.ttft_enabled:
        tests.append(("ttft", state.harm_ttft))
    for name, process in tests:
        if process.reaches(threshold):
            msg = f"harm proven on {name}: e-value {process.value():.4g} ≥ {threshold:g}"
            return _Verdict("rollback", f"harm.{name}", msg)
    return None


def errors_safe_log_e(settings: CanarySettings, state: CanaryState) -> tuple[float, float, float]:
    """ln of (combined, relative, absolute) error-safety scores for the current step.

    Non-inferiority is p_C < max(θ0·p_B, p_B + δ): its null is the intersection of
    H_rel: p_C ≥ θ0·p_B and H_abs: p_C ≥ p_B + δ, so rejecting either at α_safe/2 rejects it at
    α_safe. Relative route: the e-process ≥ 2/α_safe. Absolute route: with L_B the baseline's
    anytime (1 − α_safe/4) lower confidence bound, the candidate's e-process for p_C ≥ L_B + δ
    reaches 4/α_safe (a union bound over the two confidence sequences; docs/canary.md). The
    combined score max(rel − ln 2, abs − ln 4) reaches ln(1/α_safe) when either route passes.
    Without an absolute margin the relative route has the whole α_safe."""
    rel = state.safe_errors.log_value()
    an = settings.analysis
    c, b = state.step_candidate, state.step_baseline
    if an.error_margin_abs <= 0:
        return rel, rel, 0.0
    absolute = 0.0
    if b.requests and c.requests:
        prior = abs_prior_b(an.error_margin_abs)
        floor_b = lower_bound(b.failures, b.requests, an.alpha_safe / 4, prior)
        absolute = below_log_e(c.failures, c.requests, floor_b + an.error_margin_abs, prior)
    return max(rel - math.log(2.0), absolute - math.log(4.0)), rel, absolute


def _safety(settings: CanarySettings, state: CanaryState, now: float) -> _Verdict | None:
    step = settings.steps[state.step]
    c, b = state.step_candidate, state.step_baseline
    if c.requests < max(1, step.min_samples) or b.requests < 1:
        return None
    if now - state.step_started_at < step.min_duration_s:
        return None
    if settings.latency_enabled and not state.safe_slow.reaches(settings.safe_threshold):
        return None
    ttft_seen = c.ttft_n > 0 or b.ttft_n > 0
    if settings.ttft_enabled and ttft_seen and not state.safe_ttft.reaches(settings.safe_threshold):
        return None
    if errors_safe_log_e(settings, state)[0] < math.log(settings.safe_threshold):
        return None
    last = state.step == len(settings.steps) - 1
    what = "the last step" if last else f"step {state.step} ({step.weight:g}%)"
    msg = f"non-inferiority proven in {what} with {c.requests} canary requests"
    return _Verdict("promote" if last else "advance", "safety", msg)


def _max_duration(settings: CanarySettings, state: CanaryState, now: float) -> _Verdict | None:
    limit = settings.steps[state.step].max_duration_s
    if now - state.step_started_at < limit:
        return None
    msg = f"no decision within max_duration {limit:g} s: on_inconclusive={settings.on_inconclusive}"
    if settings.on_inconclusive == "rollback":
        return _Verdict("rollback", "max_duration.rollback", msg)
    return _Verdict("hold", "max_duration.hold", msg)


Rule = Callable[[CanarySettings, CanaryState, float], _Verdict | None]
RULES: tuple[Rule, ...] = (_guardrail, _srm, _harm, _safety, _max_duration)  # precedence order
PAUSED_RULES: tuple[Rule, ...] = (_guardrail, _harm, _incident_end)


def _enter_step(settings: CanarySettings, state: CanaryState, step: int, now: float) -> CanaryState:
    an = settings.analysis
    return replace(
        state,
        status="progressing",
        step=step,
        step_started_at=now,
        safe_errors=EProcess.safety(an.error_margin_rel),
        safe_slow=EProcess.safety(an.latency_margin_rel),
        safe_ttft=EProcess.safety(an.latency_margin_rel),
        step_candidate=ArmCounts(),
        step_baseline=ArmCounts(),
        srm_candidate=0,
        srm_baseline=0,
        pause_reason=None,
    )


def _next_state(
    settings: CanarySettings, state: CanaryState, action: Action, now: float
) -> CanaryState:
    if action == "advance":
        state = _enter_step(settings, state, state.step + 1, now)
    elif action == "resume":
        state = _enter_step(settings, state, state.step, now)
    elif action == "rollback":
        state = replace(state, status="rolled_back", pause_reason=None)
    elif action == "promote":
        state = replace(state, status="promoted", pause_reason=None)
    else:
        state = replace(state, status="paused", pause_reason=PAUSE_REASONS[action])
    return replace(state, generation=state.generation + 1)


def _transition(
    settings: CanarySettings, state: CanaryState, verdict: _Verdict, now: float
) -> tuple[CanaryState, DecisionRecord]:
    new = _next_state(settings, state, verdict.action, now)
    record = DecisionRecord(
        time=now,
        generation=new.generation,
        action=verdict.action,
        rule=verdict.rule,
        status=new.status,
        step_from=state.step,
        step_to=new.step,
        weight_from=current_weight(settings, state),
        weight_to=current_weight(settings, new),
        message=verdict.message,
        snapshot=snapshot(settings, state, now),
    )
    return new, record


def snapshot(settings: CanarySettings, state: CanaryState, now: float) -> Snapshot:
    """Every number the judge uses, for records and status pages."""
    c, b = state.step_candidate, state.step_baseline
    combined, rel, absolute = errors_safe_log_e(settings, state)
    share = settings.weight(state.step) / 100.0
    srm = srm_test(state.srm_candidate, state.srm_baseline, share)
    return Snapshot(
        elapsed_s=now - state.step_started_at,
        step_candidate=c,
        step_baseline=b,
        total_candidate=state.total_candidate,
        total_baseline=state.total_baseline,
        error_rate_candidate=c.error_rate,
        error_rate_baseline=b.error_rate,
        theta_errors=_ratio(c.error_rate, b.error_rate),
        theta_errors_total=_ratio(
            state.total_candidate.error_rate, state.total_baseline.error_rate
        ),
        slow_rate_candidate=c.slow_rate,
        slow_rate_baseline=b.slow_rate,
        theta_slow=_ratio(c.slow_rate, b.slow_rate),
        error_ucb_candidate=upper_bound(
            c.failures,
            c.requests,
            settings.analysis.alpha_safe,
            abs_prior_b(settings.analysis.error_margin_abs),
        ),
        e_harm_errors=state.harm_errors.value(),
        e_harm_slow=state.harm_slow.value(),
        harm_threshold=settings.harm_threshold,
        e_safe_errors=capped_exp(combined),
        e_safe_errors_rel=capped_exp(rel),
        e_safe_errors_abs=capped_exp(absolute),
        e_safe_slow=state.safe_slow.value(),
        safe_threshold=settings.safe_threshold,
        srm_p_value=None if srm is None else srm.p_value,
        srm_observed_share=None if srm is None else srm.observed_share,
        srm_expected_share=share,
        srm_alpha=settings.srm_alpha,
        consecutive_failures=state.streak,
        e_harm_ttft=state.harm_ttft.value(),
        e_safe_ttft=state.safe_ttft.value(),
        srm_e_value=capped_exp(srm_log_e(state.srm_candidate, state.srm_baseline, share)),
        srm_unit="sessions" if state.srm_sessions else "requests",
    )


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or not den else num / den


def _manual(
    settings: CanarySettings,
    state: CanaryState,
    action: Action,
    allowed: tuple[str, ...],
    now: float,
    note: str,
) -> tuple[CanaryState, DecisionRecord]:
    if state.status not in allowed:
        raise InvalidTransition(f"cannot {action} a canary that is {state.status}")
    return _transition(settings, state, _Verdict(action, "manual", note or f"manual {action}"), now)


def pause(
    settings: CanarySettings, state: CanaryState, now: float, note: str = ""
) -> tuple[CanaryState, DecisionRecord]:
    """Freeze the current weight; guardrails and harm can still roll back."""
    return _manual(settings, state, "pause", ("progressing",), now, note)


def resume(
    settings: CanarySettings, state: CanaryState, now: float, note: str = ""
) -> tuple[CanaryState, DecisionRecord]:
    """Continue a paused canary: its current step starts over (counts and safety reset)."""
    return _manual(settings, state, "resume", ("paused",), now, note)


def promote(
    settings: CanarySettings, state: CanaryState, now: float, note: str = ""
) -> tuple[CanaryState, DecisionRecord]:
    """Send all traffic to the candidate now, whatever the evidence says."""
    return _manual(settings, state, "promote", ("progressing", "paused"), now, note)


def rollback(
    settings: CanarySettings, state: CanaryState, now: float, note: str = ""
) -> tuple[CanaryState, DecisionRecord]:
    """Send all traffic back to the baseline now."""
    return _manual(settings, state, "rollback", ("progressing", "paused"), now, note)
