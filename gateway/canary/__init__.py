"""Progressive canary rollout: the statistical judgement and the pure state machine.

Owns deciding, not doing: `judge.decide` turns one time bucket of per-arm counts into the next
canary state and, on a transition, a decision record. No I/O, no clock, no config parsing: the
controller that reads buckets from the live store, holds the leader lease and moves weights
(`gateway.control.controller`) drives these functions.

Modules: `settings` (typed settings), `state` (state, evidence, records), `stats` (e-processes,
absolute-margin bound, SRM), `judge` (rules and manual actions), `projection` (how long steps
take), `validate` (settings that cannot reach a decision). See docs/canary.md.
"""

from gateway.canary.judge import (
    InvalidTransition,
    current_weight,
    decide,
    initial_state,
    pause,
    promote,
    resume,
    rollback,
    snapshot,
)
from gateway.canary.projection import StepProjection, format_projection, project
from gateway.canary.settings import Analysis, CanarySettings, Guardrails, Step
from gateway.canary.state import ArmCounts, CanaryState, DecisionRecord, Evidence, Snapshot
from gateway.canary.validate import validate_canary

__all__ = [
    "Analysis",
    "ArmCounts",
    "CanarySettings",
    "CanaryState",
    "DecisionRecord",
    "Evidence",
    "Guardrails",
    "InvalidTransition",
    "Snapshot",
    "Step",
    "StepProjection",
    "current_weight",
    "decide",
    "format_projection",
    "initial_state",
    "pause",
    "project",
    "promote",
    "resume",
    "rollback",
    "snapshot",
    "validate_canary",
]
