"""The canary's stored state, the evidence it consumes, and the decision records it writes.

Owns the frozen values that cross the judge's boundary and their JSON forms:
- `Evidence`: one time bucket of counts per arm (what the store aggregates per bucket);
- `CanaryState`: everything the judge needs to resume after a restart (status, step, generation,
  the e-process accumulators, per-step and total counts, the bucket cursor). `to_dict` /
  `from_dict` round-trip exactly (floats survive JSON);
- `Snapshot`: the judge's numbers at one moment (estimates, e-values, thresholds, SRM);
- `DecisionRecord`: one transition with the rule that fired and the snapshot behind it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, astuple, dataclass, field, fields
from typing import Any, Literal

from gateway.canary.settings import Analysis
from gateway.canary.stats import EProcess

Status = Literal["progressing", "paused", "promoted", "rolled_back"]
PauseReason = Literal["srm", "inconclusive", "manual", "incident", "state_lost"]
Action = Literal[
    "advance",
    "hold",
    "rollback",
    "promote",
    "pause",
    "resume",
    "srm_freeze",
    "incident",
    "restore",  # re-written after the shared control state was lost
    "revert",  # a promotion undone
    "restart",  # a rolled-back pair run again as a new rollout
]
TERMINAL: frozenset[str] = frozenset({"promoted", "rolled_back"})


@dataclass(frozen=True, slots=True)
class ArmCounts:
    """Counts of one arm. `latency_n` requests had a latency (or, with `metric: ttft`, TTFT)
    observation eligible for the tail test (successful; for TTFT, streamed); `slow` of them were
    above the threshold. With `metric: both`, `ttft_n` / `ttft_slow` are the same for TTFT.

    With a sticky key (`Evidence.sessions`), `sessions` counts the sessions first seen in the
    bucket and `failed_sessions` those of them with a failure in it: each session is one unit,
    once, for the SRM and the error tests (docs/canary.md, "Sticky sessions")."""

    requests: int = 0
    failures: int = 0  # outcome in exchange.VERSION_FAILURES
    latency_n: int = 0
    slow: int = 0
    ttft_n: int = 0
    ttft_slow: int = 0
    sessions: int = 0
    failed_sessions: int = 0

    def check(self) -> None:
        """Raise ValueError unless the counts are consistent (Evidence checks its arms)."""
        if min(astuple(self)) < 0:
            raise ValueError(f"negative count in {self}")
        if (
            self.failures > self.requests
            or self.slow > self.latency_n
            or self.ttft_slow > self.ttft_n
            or self.failed_sessions > self.sessions
        ):
            raise ValueError(f"inconsistent counts {self}: a part exceeds its whole")

    def plus(self, other: ArmCounts, latency: bool = True) -> ArmCounts:
        """These counts with `other` added (its latency and TTFT part only when `latency`)."""
        return ArmCounts(
            self.requests + other.requests,
            self.failures + other.failures,
            self.latency_n + (other.latency_n if latency else 0),
            self.slow + (other.slow if latency else 0),
            self.ttft_n + (other.ttft_n if latency else 0),
            self.ttft_slow + (other.ttft_slow if latency else 0),
            self.sessions + other.sessions,
            self.failed_sessions + other.failed_sessions,
        )

    def minus(self, other: ArmCounts) -> ArmCounts:
        """The requests and failures of these counts without `other`'s (never below 0)."""
        return ArmCounts(
            max(0, self.requests - other.requests), max(0, self.failures - other.failures)
        )

    def error_units(self, sessions: bool) -> tuple[int, int]:
        """(units, failed units) the error tests count: requests, or sessions with a sticky key."""
        return (self.sessions, self.failed_sessions) if sessions else (self.requests, self.failures)

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.requests if self.requests else None

    @property
    def slow_rate(self) -> float | None:
        return self.slow / self.latency_n if self.latency_n else None


@dataclass(frozen=True, slots=True)
class Evidence:
    """One time bucket, observed for both arms over the same window.

    `bucket` is a strictly increasing index (e.g. floor(start / bucket_s)); the judge applies
    each bucket once and ignores replays. `consecutive_failures` is the longest run of candidate
    failures in a row seen in this bucket, counting a run carried in from earlier buckets.
    `sessions` says the arms carry session counts (a sticky key): the SRM and the error tests
    then count new sessions, each once, so that failures clustered by session do not count as
    independent evidence (docs/canary.md, "Sticky sessions")."""

    bucket: int
    start: float
    candidate: ArmCounts
    baseline: ArmCounts
    consecutive_failures: int = 0
    sessions: bool = False

    def __post_init__(self) -> None:
        self.candidate.check()
        self.baseline.check()
        if self.consecutive_failures < 0:
            raise ValueError("consecutive_failures must be ≥ 0")


@dataclass(frozen=True, slots=True)
class CanaryState:
    status: Status
    step: int
    step_started_at: float
    generation: int
    cursor: int  # the last bucket applied; -1 before any
    harm_errors: EProcess  # over the whole canary
    harm_slow: EProcess
    safe_errors: EProcess  # over the current step (reset when the step changes or resumes)
    safe_slow: EProcess
    harm_ttft: EProcess = field(default_factory=EProcess.harm)  # with `metric: both`
    safe_ttft: EProcess = field(
        default_factory=lambda: EProcess.safety(Analysis().latency_margin_rel)
    )
    step_candidate: ArmCounts = ArmCounts()  # latency part after warm-up only
    step_baseline: ArmCounts = ArmCounts()
    total_candidate: ArmCounts = ArmCounts()
    total_baseline: ArmCounts = ArmCounts()
    srm_candidate: int = 0  # step units (requests or new sessions) once the split has settled
    srm_baseline: int = 0
    srm_sessions: bool = False  # the SRM counts new sessions (a sticky key), not requests
    streak: int = 0  # the last reported consecutive-failure run of the candidate
    pause_reason: PauseReason | None = None
    last_candidate: ArmCounts = ArmCounts()  # the last bucket applied (incident checks)
    last_baseline: ArmCounts = ArmCounts()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, EProcess):
                out[f.name] = value.to_dict()
            elif isinstance(value, ArmCounts):
                out[f.name] = asdict(value)
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CanaryState:
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name.startswith(("harm_", "safe_")):
                kwargs[f.name] = EProcess.from_dict(value)
            elif f.name.startswith(("step_c", "step_b", "total_", "last_")):
                kwargs[f.name] = ArmCounts(**value)
            else:
                kwargs[f.name] = value
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The judge's numbers at one moment (the step's unless named total)."""

    elapsed_s: float
    step_candidate: ArmCounts
    step_baseline: ArmCounts
    total_candidate: ArmCounts
    total_baseline: ArmCounts
    error_rate_candidate: float | None
    error_rate_baseline: float | None
    theta_errors: float | None  # p̂_C / p̂_B in the step
    theta_errors_total: float | None
    slow_rate_candidate: float | None
    slow_rate_baseline: float | None
    theta_slow: float | None
    error_ucb_candidate: float  # time-uniform (1 − α_safe) upper bound on p_C in the step
    e_harm_errors: float
    e_harm_slow: float
    harm_threshold: float  # m / α_harm
    e_safe_errors: float  # the average of the relative and absolute e-values (or the relative)
    e_safe_errors_rel: float
    e_safe_errors_abs: float
    e_safe_slow: float
    safe_threshold: float  # 1 / α_safe
    srm_p_value: float | None  # None until both arms expect ≥ 10 requests
    srm_observed_share: float | None
    srm_expected_share: float
    srm_alpha: float
    consecutive_failures: int
    e_harm_ttft: float = 1.0  # with `metric: both`
    e_safe_ttft: float = 1.0
    srm_e_value: float = 1.0  # the sequential check that decides (freeze at 1/srm_alpha)
    srm_unit: str = "requests"  # or "sessions" with a sticky key

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_safe(v) for k, v in asdict(self).items()}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    time: float
    generation: int  # the generation this transition created
    action: Action
    rule: str  # guardrail.consecutive_failures, srm, harm.errors, safety, manual, ...
    status: Status  # the status after the transition
    step_from: int
    step_to: int
    weight_from: float
    weight_to: float
    message: str
    snapshot: Snapshot

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "snapshot"}
        out["snapshot"] = self.snapshot.to_dict()
        return out
