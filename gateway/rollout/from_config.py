"""Turning a validated `routing.canary` config block into the judge's `CanarySettings`."""

from __future__ import annotations

from gateway.config.schema import Canary
from gateway.rollout.settings import Analysis, CanarySettings, Guardrails, Step


def canary_settings(c: Canary) -> CanarySettings:
    a = c.analysis
    return CanarySettings(
        baseline=c.baseline,
        candidate=c.candidate,
        steps=tuple(
            Step(s.weight, s.min_samples, s.min_duration_s, s.max_duration_s) for s in c.steps
        ),
        analysis=Analysis(
            alpha_harm=a.alpha_harm,
            alpha_safe=a.alpha_safe,
            error_margin_rel=a.error_margin_rel,
            error_margin_abs=a.error_margin_abs,
            latency_margin_rel=a.latency_margin_rel,
            slow_percentile=a.slow_percentile,
            metric=a.metric,
            warmup_requests=a.warmup_requests,
            warmup_s=a.warmup_s,
        ),
        guardrails=Guardrails(
            c.guardrails.consecutive_failures,
            c.guardrails.max_error_rate,
            c.guardrails.min_requests,
        ),
        on_inconclusive=c.on_inconclusive,
        srm_alpha=c.srm_alpha,
    )
