"""The canary judge: a pure state machine that a controller drives one time bucket at a time.

`decide(settings, state, evidence, now)` applies one bucket (idempotently: a bucket at or below
the cursor is ignored), then checks the rules in this order; the first that holds fires:

1. guardrail (candidate failures in a row, or the step's candidate error rate above the cap
   once it has `min_requests`) → rollback;
2. sample-ratio mismatch (chi-square of the step's settled split, p < srm_alpha) → pause (srm);
3. a harm e-value ≥ m/α_harm (m = 2 with the tail test, else 1) → rollback;
4. every safety e-value ≥ 1/α_safe, and min_samples, and min_duration → advance (promote after
   the last step);
5. max_duration → hold (pause, inconclusive) or rollback, per `on_inconclusive`;
6. otherwise nothing: no record is written (a status page reads `snapshot()` instead).

While paused only rules 1 and 3 run: rolling back stays possible, nothing advances. Promoted and
rolled-back canaries ignore evidence. Every transition increments `generation` (the controller's
compare-and-set token) and returns a `DecisionRecord`. Manual `pause`, `resume`, `promote` and
`rollback` are pure too; `resume` restarts the current step's analysis window.
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
    log_mean_exp,
    srm_test,
    upper_bound,
)
from gateway.errors import GatewayError

SRM_SETTLE_S = 2.0  # buckets starting this soon after a step change skip the SRM counts
PAUSE_REASONS: Mapping[str, PauseReason] = {
    "srm_freeze": "srm",
    "hold": "inconclusive",
    "pause": "manual",
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
    errors = (c.requests, b.requests, c.failures, b.failures)
    return CanaryState(  # built directly: dataclasses.replace is slow on this per-bucket path
        status=state.status,
        step=state.step,
        step_started_at=state.step_started_at,
        generation=state.generation,
        cursor=ev.bucket,
        harm_errors=state.harm_errors.update(*errors),
        harm_slow=harm_slow,
        safe_errors=state.safe_errors.update(*errors),
        safe_slow=safe_slow,
        step_candidate=state.step_candidate.plus(c, warm),
        step_baseline=state.step_baseline.plus(b, warm),
        total_candidate=state.total_candidate.plus(c),
        total_baseline=state.total_baseline.plus(b),
        srm_candidate=state.srm_candidate + (c.requests if settled else 0),
        srm_baseline=state.srm_baseline + (b.requests if settled else 0),
        streak=ev.consecutive_failures,
        pause_reason=state.pause_reason,
    )


def _verdict(settings: CanarySettings, state: CanaryState, now: float) -> _Verdict | None:
    checks = RULES if state.status == "progressing" else PAUSED_RULES
    for check in checks:
        verdict = check(settings, state, now)
        if verdict is not None:
            return verdict
    return None


def _guardrail(settings: CanarySettings, state: CanaryState, now: float) -> _Verdict | None:
    g, c = settings.guardrails, state.step_candidate
    if state.streak >= g.consecutive_failures:
        msg = f"{state.streak} candidate failures in a row (limit {g.consecutive_failures})"
        return _Verdict("rollback", "guardrail.consecutive_failures", msg)
    if c.requests >= g.min_requests and c.failures > g.max_error_rate * c.requests:
        msg = (
            f"candidate error rate {c.failures}/{c.requests} above the cap {g.max_error_rate:.0%}"
            f" (checked from {g.min_requests} requests)"
        )
        return _Verdict("rollback", "guardrail.max_error_rate", msg)
    return None


def _srm(settings: CanarySettings, state: CanaryState, now: float) -> _Verdict | None:
    share = settings.weight(state.step) / 100.0
    res = srm_test(state.srm_candidate, state.srm_baseline, share)
    if res is None or res.p_value >= settings.srm_alpha:
        return None
    msg = (
        f"observed candidate share {res.observed_share:.2%} of {res.n_candidate + res.n_baseline}"
        f" requests vs configured {share:.2%} (chi-square p = {res.p_value:.2g}"
        f" < {settings.srm_alpha:g}): routing or attribution is broken, weights frozen"
    )
    return _Verdict("srm_freeze", "srm", msg)


def _harm(settings: CanarySettings, state: CanaryState, now: float) -> _Verdict | None:
    threshold = settings.harm_threshold
    tests = [("errors", state.harm_errors)]
    if settings.latency_enabled:
        tests.append(("latency", state.harm_slow))
    for name, process in tests:
        if process.reaches(threshold):
            msg = f"harm proven on {name}: e-value {process.value():.4g} ≥ {threshold:g}"
            return _Verdict("rollback", f"harm.{name}", msg)
    return None


def errors_safe_log_e(settings: CanarySettings, state: CanaryState) -> tuple[float, float, float]:
    """ln of (combined, relative, absolute) error-safety e-values for the current step.

    With an absolute margin δ > 0 the combined e-value is the average of the relative one
    (H0: p_C ≥ θ0·p_B) and the absolute one (H0: p_C ≥ p̂_B + δ), which proves
    p_C < max(θ0·p_B, p_B + δ); an average of e-values is an e-value."""
    rel = state.safe_errors.log_value()
    delta = settings.analysis.error_margin_abs
    c, b = state.step_candidate, state.step_baseline
    if delta <= 0 or b.requests == 0:
        return rel, rel, 0.0
    limit = b.failures / b.requests + delta
    absolute = below_log_e(c.failures, c.requests, limit, abs_prior_b(delta))
    return log_mean_exp((rel, absolute)), rel, absolute


def _safety(settings: CanarySettings, state: CanaryState, now: float) -> _Verdict | None:
    step = settings.steps[state.step]
    if state.step_candidate.requests < max(1, step.min_samples) or state.step_baseline.requests < 1:
        return None
    if now - state.step_started_at < step.min_duration_s:
        return None
    if settings.latency_enabled and not state.safe_slow.reaches(settings.safe_threshold):
        return None
    if errors_safe_log_e(settings, state)[0] < math.log(settings.safe_threshold):
        return None
    last = state.step == len(settings.steps) - 1
    what = "the last step" if last else f"step {state.step} ({step.weight:g}%)"
    msg = f"non-inferiority proven in {what} with {state.step_candidate.requests} canary requests"
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
PAUSED_RULES: tuple[Rule, ...] = (_guardrail, _harm)


def _enter_step(settings: CanarySettings, state: CanaryState, step: int, now: float) -> CanaryState:
    an = settings.analysis
    return replace(
        state,
        status="progressing",
        step=step,
        step_started_at=now,
        safe_errors=EProcess.safety(an.error_margin_rel),
        safe_slow=EProcess.safety(an.latency_margin_rel),
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
    srm = srm_test(state.srm_candidate, state.srm_baseline, settings.weight(state.step) / 100.0)
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
        srm_expected_share=settings.weight(state.step) / 100.0,
        srm_alpha=settings.srm_alpha,
        consecutive_failures=state.streak,
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
