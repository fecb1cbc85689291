"""The canary's typed settings: what `routing.canary` says, as frozen values the judge reads.

Owns names, defaults and derived quantities (thresholds, weights as fractions). Checking that
settings make sense together, and can reach a decision, lives in `validate.py`; config parsing
(YAML paths and lines) stays in `gateway/config/`, which builds a `CanarySettings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Metric = Literal["both", "latency", "ttft", "none"]
OnInconclusive = Literal["hold", "rollback"]


@dataclass(frozen=True, slots=True)
class Step:
    weight: float  # candidate share in percent, (0, 100)
    min_samples: int = 500  # candidate requests in this step before it may advance
    min_duration_s: float = 600.0
    max_duration_s: float = 3600.0  # then `on_inconclusive` applies


@dataclass(frozen=True, slots=True)
class Analysis:
    alpha_harm: float = 0.05  # family-wise over the harm metrics (Bonferroni)
    alpha_safe: float = 0.05  # per safety test (all must pass: no correction needed)
    error_margin_rel: float = 1.5  # θ0: non-inferior if p_C < θ0 · p_B ...
    error_margin_abs: float = 0.005  # ... or p_C < p_B + this (0 disables the absolute rule)
    latency_margin_rel: float = 1.5  # θ0 for the slow fraction (share above baseline's pXX)
    slow_percentile: float = 95.0  # pXX of the baseline's previous window marks "slow"
    metric: Metric = "both"  # tail tests: latency and TTFT, one of them, or none
    warmup_requests: int = 50  # after each step change, excluded from the tail test only
    warmup_s: float = 60.0  # (both must have passed before a bucket counts)


@dataclass(frozen=True, slots=True)
class Guardrails:
    consecutive_failures: int = 5  # candidate failures in a row → rollback
    max_error_rate: float = 0.20  # candidate failure rate in the step → rollback ...
    min_requests: int = 20  # ... once the step has this many candidate requests


DEFAULT_STEPS: tuple[Step, ...] = (
    Step(weight=10, min_samples=500, min_duration_s=600, max_duration_s=5400),
    Step(weight=25, min_samples=1000, min_duration_s=600, max_duration_s=3600),
    Step(weight=50, min_samples=1000, min_duration_s=600, max_duration_s=3600),
)


@dataclass(frozen=True, slots=True)
class CanarySettings:
    baseline: str
    candidate: str
    steps: tuple[Step, ...] = DEFAULT_STEPS
    analysis: Analysis = field(default_factory=Analysis)
    guardrails: Guardrails = field(default_factory=Guardrails)
    on_inconclusive: OnInconclusive = "hold"
    srm_alpha: float = 1e-4

    @property
    def latency_enabled(self) -> bool:
        return self.analysis.metric != "none"

    @property
    def ttft_enabled(self) -> bool:
        """A second tail test on TTFT (streamed traffic), beside the latency one."""
        return self.analysis.metric == "both"

    @property
    def harm_metrics(self) -> int:
        """m, the number of metrics the harm level is split across (Bonferroni)."""
        return 1 + self.latency_enabled + self.ttft_enabled

    @property
    def harm_threshold(self) -> float:
        return self.harm_metrics / self.analysis.alpha_harm

    @property
    def safe_threshold(self) -> float:
        return 1.0 / self.analysis.alpha_safe

    @property
    def slow_fraction(self) -> float:
        """The share of baseline requests that are "slow" by construction (1 − pXX)."""
        return 1.0 - self.analysis.slow_percentile / 100.0

    def weight(self, step: int) -> float:
        return float(self.steps[step].weight)
