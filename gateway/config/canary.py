"""The `routing.canary` block: its typed shape, and its translation into the canary judge's
`CanarySettings` (the judge knows nothing of config files)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.canary.settings import Analysis, CanarySettings, Guardrails, Step
from gateway.config.base import Strict


class CanaryStep(Strict):
    """One step of a canary: the candidate's share and when the step may end."""

    weight: float = Field(gt=0, lt=100, description="The candidate's share of traffic, percent.")
    min_samples: int = Field(
        500,
        ge=1,
        description="Candidate requests in the step before it may advance; `validate` refuses"
        " fewer than the sample-ratio check needs at `srm_alpha`.",
    )
    min_duration_s: float = Field(600.0, ge=0, description="Shortest time in the step.")
    max_duration_s: float = Field(
        3600.0, gt=0, description="Then `on_inconclusive` applies if nothing was proven."
    )


class CanaryAnalysis(Strict):
    """How the canary judges the candidate against the baseline (see docs/canary.md)."""

    alpha_harm: float = Field(
        0.05,
        gt=0,
        lt=0.5,
        description="False-rollback level, split across the harm metrics (errors, latency, TTFT)."
        " `on_inconclusive: rollback` is outside it (its measured rate is in docs/canary.md).",
    )
    alpha_safe: float = Field(
        0.05,
        gt=0,
        lt=0.5,
        description="Level of each non-inferiority (safety) test; the error test splits it"
        " between its relative and absolute routes.",
    )
    error_margin_rel: float = Field(
        1.5, gt=1, description="Non-inferior if the candidate's error rate < this × baseline's."
    )
    error_margin_abs: float = Field(
        0.005,
        ge=0,
        lt=1,
        description="... or < baseline's + this, allowing for the uncertainty in the baseline's"
        " rate (0 disables the absolute margin).",
    )
    latency_margin_rel: float = Field(
        1.5, gt=1, description="Margin on the share of slow requests (above the baseline's pXX)."
    )
    slow_percentile: float = Field(
        95.0, gt=50, lt=100, description="The baseline percentile that marks a request slow."
    )
    metric: Literal["both", "latency", "ttft", "none"] = Field(
        "both",
        description='What "slow" is measured on: `both` judges latency and, on streamed traffic,'
        " TTFT (α_harm split three ways); `none` disables the tail tests.",
    )
    warmup_requests: int = Field(
        50, ge=0, description="After each step change, excluded from the tail test only."
    )
    warmup_s: float = Field(60.0, ge=0, description="Likewise, in seconds (both must pass).")
    bucket_s: int = Field(
        10, ge=1, le=300, description="Evidence is judged once per bucket of this many seconds."
    )


class CanaryGuardrails(Strict):
    """Hard limits outside the statistics."""

    consecutive_failures: int = Field(
        5,
        ge=1,
        description="Candidate failures in a row that roll back (pause, reason `incident`, when"
        " the baseline fails too in the same window).",
    )
    max_error_rate: float = Field(
        0.20, gt=0, le=1, description="Candidate error rate in the step that rolls back ..."
    )
    min_requests: int = Field(
        20, ge=1, description="... once the step has this many requests (sessions, if sticky)."
    )


DEFAULT_STEPS = (
    CanaryStep(weight=10, min_samples=500, min_duration_s=600, max_duration_s=5400),
    CanaryStep(weight=25, min_samples=1000, min_duration_s=600, max_duration_s=3600),
    CanaryStep(weight=50, min_samples=1000, min_duration_s=600, max_duration_s=3600),
)


class FromRegistry(Strict):
    """A rollout started by the model registry: pointing `candidate_alias` at a version other
    than `baseline_alias`'s starts it; the outcome is written back (see docs/registry.md)."""

    baseline_alias: str = Field("champion", description="The registry alias that serves today.")
    candidate_alias: str = Field(
        "challenger", description="The registry alias naming the version to roll out."
    )

    @model_validator(mode="after")
    def _distinct(self) -> FromRegistry:
        if self.baseline_alias == self.candidate_alias:
            raise ValueError("baseline_alias and candidate_alias must differ")
        return self


class Canary(Strict):
    """A progressive rollout of `candidate` against `baseline` (`strategy: canary`)."""

    baseline: str | None = Field(
        None, description="The version that serves today (not with `from_registry`)."
    )
    candidate: str | None = Field(
        None, description="The version being rolled out (not with `from_registry`)."
    )
    from_registry: FromRegistry | None = Field(
        None,
        description="Take baseline and candidate from the model registry's aliases instead "
        "(the model needs a `registry` block).",
    )
    steps: tuple[CanaryStep, ...] = Field(
        DEFAULT_STEPS,
        min_length=1,
        strict=False,
        description="Increasing candidate weights (default 10, 25, 50 %); promoted after the last.",
    )
    analysis: CanaryAnalysis = Field(CanaryAnalysis(), description="The statistical tests.")
    guardrails: CanaryGuardrails = Field(CanaryGuardrails(), description="Hard limits.")
    on_inconclusive: Literal["hold", "rollback"] = Field(
        "hold", description="At a step's `max_duration_s` without a decision: pause or roll back."
    )
    srm_alpha: float = Field(
        1e-4,
        gt=0,
        lt=0.1,
        description="Level of the sequential sample-ratio check (freezes the canary), valid under"
        " continuous monitoring; it counts sessions with a sticky key.",
    )
    retry_across_arms: bool = Field(
        False,
        description="Let a failed attempt on one arm be retried on the other (its answer then "
        "never counts as evidence).",
    )
    promote_alias: str = Field(
        "stable", description="The alias pointed at the candidate when it is promoted."
    )
    expected_rps: float | None = Field(
        None, gt=0, description="Request rate `gateway validate` projects step durations for."
    )
    expected_error_rate: float = Field(
        0.01, gt=0, lt=1, description="Baseline error rate assumed by that projection."
    )

    @model_validator(mode="after")
    def _arms(self) -> Canary:
        named = self.baseline is not None and self.candidate is not None
        if self.from_registry is not None and (self.baseline or self.candidate):
            raise ValueError("give either baseline and candidate, or from_registry")
        if self.from_registry is None and not named:
            raise ValueError("baseline and candidate are required (or from_registry)")
        return self

    def arms(self) -> tuple[str, str]:
        """(baseline, candidate); a `from_registry` canary has them once the registry is read."""
        if self.baseline is None or self.candidate is None:
            raise ValueError("the registry has not named this canary's versions yet")
        return self.baseline, self.candidate


def canary_settings(c: Canary) -> CanarySettings:
    a = c.analysis
    baseline, candidate = c.arms()
    return CanarySettings(
        baseline=baseline,
        candidate=candidate,
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
