"""Prometheus series of canaries and shadow traffic (names fixed by the ops issue).

    gateway_canary_step{model}                       current step index
    gateway_canary_weight{model}                     the candidate's percent now
    gateway_canary_state{model,state}                1 for the current state, 0 for the others
    gateway_canary_evalue{model,metric,test}         metric errors|latency, test harm|safety
    gateway_canary_decisions_total{model,action,rule}
    gateway_canary_attempts_total{model,version,role}  role evidence|retry (never judged)
    gateway_canary_state_lost{model}                 1 while held paused after a state loss
    gateway_control_state_lost_total                 losses of the shared control state seen
    gateway_shadow_requests_total{model,version,outcome}

Label values come from the config (model, version) or closed sets (state, action, rule, outcome).
Every replica publishes step, weight and state from the applied control state; the leader also
publishes the e-values of the state it holds.
"""

from __future__ import annotations

from gateway.canary import judge
from gateway.canary.settings import CanarySettings
from gateway.canary.state import CanaryState, DecisionRecord
from gateway.observability.exposition import Exposition

STATES = ("progressing", "paused", "promoted", "rolled_back")


class CanaryMetrics:
    def __init__(self, x: Exposition) -> None:
        self.step = x.gauge("gateway_canary_step", "Canary step index", ("model",))
        self.weight = x.gauge("gateway_canary_weight", "Candidate share in percent", ("model",))
        self.state = x.gauge("gateway_canary_state", "1 for the canary's state", ("model", "state"))
        self.evalue = x.gauge(
            "gateway_canary_evalue",
            "Canary e-values (harm: rollback at m/alpha; safety: advance at 1/alpha)",
            ("model", "metric", "test"),
        )
        self.decisions = x.counter(
            "gateway_canary_decisions_total", "Canary transitions", ("model", "action", "rule")
        )
        self.attempts = x.counter(
            "gateway_canary_attempts_total",
            "Attempts of canary-split requests: evidence (the assigned first attempt) or retry",
            ("model", "version", "role"),
        )
        self.state_lost = x.gauge(
            "gateway_canary_state_lost",
            "1 while the canary is held paused because the shared control state was lost",
            ("model",),
        )
        self.control_lost = x.counter(
            "gateway_control_state_lost_total",
            "Times this replica found the shared control state lost and re-wrote it",
            (),
        ).labels()
        self.shadow = x.counter(
            "gateway_shadow_requests_total",
            "Shadow copies by outcome (dropped: the in-flight bound was full)",
            ("model", "version", "outcome"),
        )

    def publish(
        self, model: str, settings: CanarySettings, state: CanaryState, now: float | None = None
    ) -> None:
        self.step.labels(model).set(state.step)
        self.weight.labels(model).set(judge.current_weight(settings, state))
        for name in STATES:
            self.state.labels(model, name).set(1.0 if state.status == name else 0.0)
        lost = state.status == "paused" and state.pause_reason == "state_lost"
        self.state_lost.labels(model).set(1.0 if lost else 0.0)
        if now is None:
            return
        snap = judge.snapshot(settings, state, now)
        self.evalue.labels(model, "errors", "harm").set(snap.e_harm_errors)
        self.evalue.labels(model, "errors", "safety").set(snap.e_safe_errors)
        if settings.latency_enabled:
            self.evalue.labels(model, "latency", "harm").set(snap.e_harm_slow)
            self.evalue.labels(model, "latency", "safety").set(snap.e_safe_slow)

    def decided(self, model: str, record: DecisionRecord) -> None:
        self.decisions.labels(model, record.action, record.rule).inc()
