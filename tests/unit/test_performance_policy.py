"""Seeded simulations of `strategy: performance`: shift, recovery, floors, ceilings, poisoning.

A simulated route sends `rps` requests per second through the policy's own `plan()`, draws each
attempt's outcome and latency from the version's current behaviour, counts it into the same
per-bucket fields the stores hold, and recomputes the weights every `recompute_s` from a snapshot
of those buckets — the real policy code, with simulated time. Criteria are the issue's, at the
default settings: a slow or failing version falls to its floor (+2 points) within 30 s, and comes
back to fair within 60 s of recovering without overshoot or oscillation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from random import Random
from typing import Any

import pytest

from gateway.config import GatewayConfig
from gateway.config.routes import Model, Performance
from gateway.exchange import CLIENT_CANCEL, CLIENT_ERROR, SUCCESS, UPSTREAM_ERROR, Attempt
from gateway.livestats.base import Fields, add_attempt, window_starts
from gateway.livestats.window import BucketStats, Snapshot
from gateway.observability.metrics import Metrics
from gateway.routing import RequestContext
from gateway.routing.performance import PerformancePolicy, Route, next_weights
from gateway.runtime.snapshot import Runtime

CTX = RequestContext({}, {})
EPOCH = 1_700_000_000.0
DT = 0.25


@dataclass(frozen=True)
class Behaviour:
    latency_ms: float = 50.0
    ttft_ms: float | None = None  # None: half the latency
    error_rate: float = 0.0
    client_error_rate: float = 0.0
    cancel_rate: float = 0.0
    jitter: float = 0.15  # sigma of the lognormal latency noise


def route(
    perf: dict[str, Any] | None = None,
    ceilings: dict[str, float] | None = None,
    versions: tuple[str, ...] = ("v1", "v2", "v3"),
) -> Route:
    model = Model.model_validate(
        {
            "versions": {
                v: {"upstream": {"url": "http://127.0.0.1:1/v1", "model": v}} for v in versions
            },
            "routing": {"strategy": "performance", "performance": perf or {}, "weights": ceilings},
        }
    )
    return Route.of("chat", model)


class Sim:
    def __init__(
        self, r: Route, rps: float, seed: int, bucket_s: int = 5, window_s: int = 60
    ) -> None:
        self.policy = PerformancePolicy(r)
        self.rps, self.bucket_s, self.window_s = rps, bucket_s, window_s
        self.rng = Random(seed)
        self.t = 0.0
        self.buckets: dict[tuple[str, int], Fields] = {}
        self.trail: list[tuple[float, dict[str, float]]] = []
        self.served: dict[str, int] = {}

    def attempt(self, version: str, b: Behaviour) -> Attempt:
        rng = self.rng
        latency = b.latency_ms * math.exp(rng.gauss(0, b.jitter)) / 1000
        ttft = (b.ttft_ms if b.ttft_ms is not None else b.latency_ms / 2) / 1000
        roll = rng.random()
        outcome = SUCCESS
        if roll < b.client_error_rate:
            outcome, latency = CLIENT_ERROR, 0.002
        elif roll < b.client_error_rate + b.cancel_rate:
            outcome, latency = CLIENT_CANCEL, latency / 3
        elif rng.random() < b.error_rate:
            outcome, latency = UPSTREAM_ERROR, 0.01
        return Attempt(version, 0, False, outcome, 200, ttft, latency, 10, 20)

    def run(self, seconds: float, behaviour: dict[str, Behaviour]) -> None:
        per_step = self.rps * DT
        carry = 0.0
        for _ in range(round(seconds / DT)):
            self.t += DT
            now = EPOCH + self.t
            carry += per_step
            count, carry = int(carry), carry - int(carry)
            start = int(now // self.bucket_s) * self.bucket_s
            for _ in range(count):
                version = self.policy.plan(CTX, self.rng).versions[0]
                self.served[version] = self.served.get(version, 0) + 1
                fields = self.buckets.setdefault((version, start), {})
                add_attempt(fields, self.attempt(version, behaviour.get(version, Behaviour())), ())
            if self.policy.due(self.t):
                self.policy.update(self.snapshot(now), now, self.t, self.rng)
                self.trail.append((self.t, self.policy.weights()))

    def snapshot(self, now: float) -> Snapshot:
        starts = window_starts(now, self.bucket_s, self.window_s)
        series = {
            v: tuple(
                BucketStats.parse(s, self.buckets[(v, s)]) for s in starts if (v, s) in self.buckets
            )
            for v in self.policy.route.versions
        }
        return Snapshot(now, self.t, "memory", self.bucket_s, self.window_s, {"chat": series})

    def share(self, version: str) -> float:
        return self.policy.weights()[version]

    def until(self, seconds: float, behaviour: dict[str, Behaviour], done: Any) -> float | None:
        """Run up to `seconds`; the time `done(sim)` first held, or None."""
        began = self.t
        while self.t - began < seconds:
            self.run(1.0, behaviour)
            if done(self):
                return self.t - began
        return None


SLOW = {"v3": Behaviour(latency_ms=250.0)}
FAILING = {"v3": Behaviour(error_rate=0.2)}
FAIR = 1 / 3
FLOOR = 0.05


@pytest.mark.parametrize("fault", [SLOW, FAILING], ids=["slow+200ms", "fail20%"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shift_to_floor_then_recover_to_fair_without_overshoot(
    fault: dict[str, Behaviour], seed: int
) -> None:
    sim = Sim(route(), rps=60, seed=seed)
    sim.run(20, {})
    assert all(abs(w - FAIR) < 0.03 for w in sim.policy.weights().values())
    shifted = sim.until(30, fault, lambda s: s.share("v3") <= FLOOR + 0.02)
    assert shifted is not None, sim.policy.weights()
    sim.run(20, fault)  # it stays at the floor while the fault lasts
    assert sim.share("v3") <= FLOOR + 0.02
    recovery_start = len(sim.trail)
    back = sim.until(60, {}, lambda s: abs(s.share("v3") - FAIR) <= 0.02)
    assert back is not None, sim.policy.weights()
    sim.run(30, {})
    path = [w["v3"] for _, w in sim.trail[recovery_start:]]
    assert max(path) <= FAIR + 0.03  # no overshoot
    assert reversals(path, 0.01) <= 2  # no oscillation
    assert max_rise(sim.trail[recovery_start:], "v3", 5.0) <= 0.10  # slow start: ≤ 10 pp / 5 s
    assert abs(sim.share("v3") - FAIR) <= 0.03


def reversals(path: list[float], deadband: float) -> int:
    """How often the path changes direction by more than `deadband`."""
    turns, direction, anchor = 0, 0, path[0]
    for value in path[1:]:
        if abs(value - anchor) < deadband:
            continue
        step = 1 if value > anchor else -1
        if direction and step != direction:
            turns += 1
        direction, anchor = step, value
    return turns


def max_rise(trail: list[tuple[float, dict[str, float]]], version: str, span: float) -> float:
    rises = [
        later[version] - earlier[version]
        for i, (t0, earlier) in enumerate(trail)
        for t1, later in trail[i:]
        if t1 - t0 <= span
    ]
    return max(rises, default=0.0)


def test_equivalent_versions_keep_fair_shares() -> None:
    sim = Sim(route(), rps=60, seed=7)
    sim.run(120, {})
    lows = [min(w[v] for _, w in sim.trail[20:]) for v in ("v1", "v2", "v3")]
    assert min(lows) >= FAIR - 0.05
    total = sum(sim.served.values())
    assert all(abs(n / total - FAIR) < 0.04 for n in sim.served.values())


@pytest.mark.parametrize(("half_life", "band"), [(5.0, 0.03), (2.5, 0.06)])
def test_noisy_latency_does_not_drain_equivalent_versions(half_life: float, band: float) -> None:
    noisy = {v: Behaviour(jitter=0.35) for v in ("v1", "v2", "v3")}  # p95 ≈ 1.8 × median
    sim = Sim(route({"half_life_s": half_life}), rps=60, seed=11, bucket_s=1, window_s=30)
    sim.run(90, noisy)  # half the half-life, half the evidence: a wider band
    assert min(min(w.values()) for _, w in sim.trail[10:]) >= FAIR - band
    slow = {**noisy, "v3": Behaviour(latency_ms=250, jitter=0.35)}
    assert sim.until(30, slow, lambda s: s.share("v3") <= FLOOR + 0.02) is not None


def test_floors_and_ceilings_always_hold() -> None:
    sim = Sim(route({"min_share": 0.1}, ceilings={"v1": 40, "v2": 100, "v3": 100}), rps=60, seed=3)
    behaviour = {"v2": Behaviour(latency_ms=400), "v3": Behaviour(error_rate=0.5)}
    sim.run(60, behaviour)
    for _, weights in sim.trail:
        assert weights["v1"] <= 0.40 + 1e-9
        assert all(w >= 0.1 - 1e-9 for w in weights.values())
        assert sum(weights.values()) == pytest.approx(1.0)
    assert sim.share("v1") == pytest.approx(0.40, abs=0.01)  # the best one, held at its ceiling


def test_client_caused_errors_and_cancellations_do_not_move_traffic() -> None:
    poisoned = {"v3": Behaviour(client_error_rate=0.4, cancel_rate=0.3)}
    sim = Sim(route(), rps=60, seed=5)
    sim.run(90, poisoned)
    assert all(abs(w["v3"] - FAIR) < 0.05 for _, w in sim.trail)


def test_objectives_judge_different_faults() -> None:
    errors_only = Sim(route({"objective": "errors"}), rps=60, seed=2)
    errors_only.run(40, SLOW)
    assert errors_only.share("v3") > FAIR - 0.05  # slowness is not an error
    errors_only.run(30, FAILING)
    assert errors_only.share("v3") <= FLOOR + 0.02
    ttft = Sim(route({"objective": "ttft"}), rps=60, seed=2)
    late_start = {"v3": Behaviour(latency_ms=50, ttft_ms=240)}
    ttft.run(40, late_start)
    assert ttft.share("v3") <= FLOOR + 0.02
    latency = Sim(route({"objective": "latency"}), rps=60, seed=2)
    latency.run(40, late_start)  # same total latency: the latency objective does not mind
    assert latency.share("v3") > FAIR - 0.05


def test_score_objective_mixes_components() -> None:
    sim = Sim(
        route({"objective": "score", "score_weights": {"errors": 1, "latency": 1}}), rps=60, seed=4
    )
    sim.run(40, FAILING)
    assert sim.share("v3") <= FLOOR + 0.02


def test_no_decision_below_min_samples() -> None:
    sim = Sim(route({"min_samples": 1000}), rps=10, seed=1)  # 600 samples per minute: never enough
    sim.run(60, SLOW)
    assert all(abs(w - FAIR) < 1e-9 for w in sim.policy.weights().values())


def test_same_seed_same_trajectory() -> None:
    runs = []
    for _ in range(2):
        sim = Sim(route(), rps=40, seed=9)
        sim.run(30, SLOW)
        runs.append(sim.trail)
    assert runs[0] == runs[1]


def test_a_new_version_starts_at_its_floor_and_ramps_once_trusted() -> None:
    r = route()
    previous = {"v1": 0.5, "v2": 0.5, "v3": 0.0}
    good = BucketStats.parse(int(EPOCH) - 5, {"o:success": 100, "l:60": 100})
    untrusted = next_weights(r, {"v1": [good], "v2": [good]}, previous, EPOCH, 1.0, 5, Random(1))
    assert untrusted.weights["v3"] == pytest.approx(FLOOR)  # held at the floor: no evidence yet
    trusted = {v: [good] for v in ("v1", "v2", "v3")}
    decision = next_weights(r, trusted, untrusted.weights, EPOCH, 1.0, 5, Random(1))
    assert decision.weights["v3"] == pytest.approx(FLOOR + FAIR / 20)  # 1 s of a 20 s ramp
    assert sum(decision.weights.values()) == pytest.approx(1.0)


def test_versions_outside_the_pool_get_no_traffic() -> None:
    r = route({"versions": ["v1", "v2"]})
    assert r.fair == {"v1": 0.5, "v2": 0.5}
    sim = Sim(r, rps=30, seed=1)
    sim.run(10, {})
    assert "v3" not in sim.served and sim.share("v3") == 0.0


def test_defaults_are_documented_values() -> None:
    perf = Performance()
    assert (perf.objective, perf.min_samples, perf.min_share, perf.half_life_s) == (
        "latency",
        20,
        0.05,
        5.0,
    )
    assert replace(Behaviour(), latency_ms=1).latency_ms == 1


def test_a_rebuilt_runtime_keeps_the_learned_shares() -> None:
    """A reload, a control change or a registry poll rebuilds the routing table: a drained
    version keeps its floor instead of getting fair share back until the next recompute."""
    cfg = GatewayConfig.model_validate(
        {
            "models": {
                "chat": {
                    "versions": {
                        v: {"upstream": {"url": "http://127.0.0.1:1/v1", "model": v}}
                        for v in ("v1", "v2", "v3")
                    },
                    "routing": {"strategy": "performance"},
                }
            }
        }
    )
    runtime = Runtime.build(cfg, Metrics(), {})
    sim = Sim(route(), rps=40, seed=3)
    sim.policy = policy = runtime.registry.models["chat"].policy
    assert isinstance(policy, PerformancePolicy)
    sim.run(40, SLOW)
    learned = policy.weights()
    assert learned["v3"] < FLOOR + 0.02  # drained

    for rebuilt in (
        runtime.rebuilt({}),  # a reload of the same file
        runtime.rebuilt({}, overrides={"chat": {"weights": {"v1": 100, "v2": 100, "v3": 100}}}),
    ):
        after = rebuilt.registry.models["chat"].policy
        assert isinstance(after, PerformancePolicy) and after is not policy
        assert after.weights() == pytest.approx(learned)
        assert not after.due(sim.t)  # the recompute schedule goes on, not restarted

    grown = cfg.model_copy(deep=True)
    grown.models["chat"].versions["v4"] = grown.models["chat"].versions["v1"]
    after = runtime.rebuilt({}, cfg=grown).registry.models["chat"].policy
    assert isinstance(after, PerformancePolicy)
    assert after.weights()["v4"] == pytest.approx(FLOOR)  # a newcomer starts at its floor
    assert after.weights()["v3"] < FLOOR + 0.02
    assert sum(after.weights().values()) == pytest.approx(1.0)
