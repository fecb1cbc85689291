"""Whether canary settings make sense together and can reach a decision.

Owns the cross-field rules `gateway validate` applies to `routing.canary`. Problems come back as
strings that start with a key path relative to the canary block (`steps[1].weight: ...`), so the
config layer can prefix the YAML path and line. With an expected request rate, each step's
projected duration (see `projection.py`) must fit within its max_duration. Step floors: every
route to a decision is valid at any time, whatever `min_samples` and `min_duration_s` are, but a
step must gather the evidence the sequential sample-ratio check needs (at `srm_alpha`) to catch a
split off by half before it may end (`srm_floor`).
"""

from __future__ import annotations

import math

from gateway.canary.projection import project
from gateway.canary.settings import CanarySettings, Step
from gateway.canary.stats import srm_log_e

DEFAULT_BASELINE_ERROR_RATE = 0.01


def _step_problems(i: int, step: Step, previous: float) -> list[str]:
    where = f"steps[{i}]"
    out = []
    if not 0 < step.weight <= 100:
        out.append(f"{where}.weight: must be in (0, 100], got {step.weight:g}")
    elif step.weight <= previous:
        out.append(f"{where}.weight: steps must strictly increase ({step.weight:g} ≤ {previous:g})")
    elif step.weight == 100:
        out.append(
            f"{where}.weight: a 100% step leaves no baseline traffic to compare with, so it can"
            " never reach a decision; the canary is promoted after its last step"
        )
    if step.min_samples < 1:
        out.append(f"{where}.min_samples: must be ≥ 1 (no traffic must never promote)")
    if step.min_duration_s < 0:
        out.append(f"{where}.min_duration_s: must be ≥ 0")
    if step.max_duration_s <= 0 or step.max_duration_s < step.min_duration_s:
        out.append(f"{where}.max_duration_s: must be > 0 and ≥ min_duration_s")
    return out


def srm_floor(share: float, srm_alpha: float) -> int:
    """Candidate requests the sequential SRM needs, at `srm_alpha`, to freeze a split where the
    candidate gets half its `share` (along the expected path): the least evidence a step must
    gather before it may end, so that broken routing is caught before it is trusted."""
    if not 0 < share < 1 or not 0 < srm_alpha < 1:
        return 1
    target, total = math.log(1 / srm_alpha), 1
    while total < 10**9:
        n_c = total * share / 2
        if srm_log_e(round(n_c), round(total - n_c), share) >= target:
            return max(1, math.ceil(total * share))  # candidate requests at the configured share
        total = math.ceil(total * 1.05) + 1
    return 10**9


def _floor_problems(s: CanarySettings) -> list[str]:
    out = []
    for i, step in enumerate(s.steps):
        need = srm_floor(step.weight / 100.0, s.srm_alpha)
        if 0 < step.weight < 100 and step.min_samples < need:
            out.append(
                f"steps[{i}].min_samples: {step.min_samples} is below {need}, the candidate"
                f" requests the sample-ratio check needs at srm_alpha {s.srm_alpha:g} to catch a"
                f" {step.weight:g}% split that is off by half before the step can end"
            )
    return out


def _analysis_problems(s: CanarySettings) -> list[str]:
    an, g, out = s.analysis, s.guardrails, []
    for name, alpha in (
        ("analysis.alpha_harm", an.alpha_harm),
        ("analysis.alpha_safe", an.alpha_safe),
        ("srm_alpha", s.srm_alpha),
    ):
        if not 0 < alpha < 0.5:
            out.append(f"{name}: must be in (0, 0.5), got {alpha:g}")
    if an.error_margin_rel <= 1:
        out.append(f"analysis.error_margin_rel: must be > 1, got {an.error_margin_rel:g}")
    if not 0 <= an.error_margin_abs < 1:
        out.append(f"analysis.error_margin_abs: must be in [0, 1), got {an.error_margin_abs:g}")
    if s.latency_enabled and an.latency_margin_rel <= 1:
        out.append(f"analysis.latency_margin_rel: must be > 1, got {an.latency_margin_rel:g}")
    if not 50 <= an.slow_percentile < 100:
        out.append(f"analysis.slow_percentile: must be in [50, 100), got {an.slow_percentile:g}")
    if an.warmup_requests < 0 or an.warmup_s < 0:
        out.append("analysis.warmup_requests, analysis.warmup_s: must be ≥ 0")
    if g.consecutive_failures < 1:
        out.append("guardrails.consecutive_failures: must be ≥ 1")
    if not 0 < g.max_error_rate <= 1:
        out.append(f"guardrails.max_error_rate: must be in (0, 1], got {g.max_error_rate:g}")
    if g.min_requests < 1:
        out.append("guardrails.min_requests: must be ≥ 1")
    return out


def _projection_problems(s: CanarySettings, rate_rps: float, p_b: float) -> list[str]:
    out = []
    for row in project(s, rate_rps, p_b):
        if not row.fits:
            need = "never" if math.isinf(row.expected_s) else f"about {row.expected_s / 60:.0f} min"
            out.append(
                f"steps[{row.index}].max_duration_s: at {rate_rps:g} req/s and a {p_b:.2%} baseline"
                f" error rate this step needs {need} ({row.binding}) but max_duration_s is"
                f" {row.max_duration_s / 60:.0f} min, so it cannot reach a decision"
            )
    return out


def validate_canary(
    settings: CanarySettings,
    rate_rps: float | None = None,
    baseline_error_rate: float = DEFAULT_BASELINE_ERROR_RATE,
) -> list[str]:
    """Every problem found; empty when the canary is usable (at `rate_rps`, when given)."""
    out = []
    if not settings.baseline or not settings.candidate:
        out.append("baseline, candidate: both versions must be named")
    elif settings.baseline == settings.candidate:
        out.append(f"candidate: equals the baseline {settings.baseline!r}; nothing to compare")
    if not settings.steps:
        out.append("steps: at least one step is needed")
    previous = 0.0
    for i, step in enumerate(settings.steps):
        out.extend(_step_problems(i, step, previous))
        previous = max(previous, step.weight)
    out.extend(_analysis_problems(settings))
    if not out:
        out.extend(_floor_problems(settings))
    if settings.latency_enabled:
        for i, step in enumerate(settings.steps):
            if settings.analysis.warmup_s >= step.max_duration_s:
                out.append(
                    f"steps[{i}].max_duration_s: not longer than analysis.warmup_s, so the"
                    " latency test never starts"
                )
    if not out and rate_rps is not None:
        out.extend(_projection_problems(settings, rate_rps, baseline_error_rate))
    return out
