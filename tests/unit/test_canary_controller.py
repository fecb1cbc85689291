"""The canary controller over the memory control store, with an injected clock and fake evidence:
advance, rollback, promotion (alias moves), manual actions, and a restarted controller resuming
from the stored state without a double step."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from random import Random

import pytest

from gateway.app import create_app
from gateway.canary.settings import CanarySettings
from gateway.canary.state import ArmCounts, Evidence
from gateway.config import parse_config
from gateway.control.store import MemoryControl
from tests.inproc import CANARY
from tests.samples import ENV


class FakeEvidence:
    """Buckets of fixed counts, one per second of the fake clock."""

    def __init__(self, clock: list[float], cand_fail: float, share: Callable[[], float]) -> None:
        self.clock, self.cand_fail, self.share = clock, cand_fail, share

    def bucket_s(self, analysis_bucket_s: int) -> int:
        return analysis_bucket_s

    def done(self, bucket_s: int) -> int:
        return int(self.clock[0] // bucket_s) - 1

    def buckets(
        self, model: str, settings: CanarySettings, bucket_s: int, after: int
    ) -> list[Evidence]:
        out = []
        for index in range(after + 1, self.done(bucket_s) + 1):
            n = 200
            c = round(n * self.share())
            cf = int(c * self.cand_fail)
            out.append(
                Evidence(
                    index, float(index), ArmCounts(c, cf), ArmCounts(n - c, int((n - c) * 0.002))
                )
            )
        return out


def build(store: MemoryControl, clock: list[float], cand_fail: float):  # type: ignore[no-untyped-def]
    app = create_app(parse_config(CANARY, ENV), ENV, rng=Random(0))
    control = app.parts.control
    control.plane.store = store
    policy = lambda: app.current.runtime.registry.models["chat"].policy  # noqa: E731
    control.controller.evidence = FakeEvidence(clock, cand_fail, lambda: policy().weights()["v2"])
    control.controller._clock = lambda: clock[0]
    return app


async def run(app, clock: list[float], seconds: int) -> list[str]:  # type: ignore[no-untyped-def]
    actions = []
    for _ in range(seconds * 2):
        clock[0] += 0.5
        await app.parts.control.plane.poll()  # the apply loop
        for record in await app.parts.control.controller.tick():
            actions.append(record.action)
    return actions


async def test_healthy_candidate_advances_then_promotes_and_moves_the_alias() -> None:
    clock, store = [1000.0], MemoryControl(lambda: 0.0)
    app = build(store, clock, 0.0)
    actions = await run(app, clock, 200)
    assert "promote" in actions and actions[0] == "advance"
    model = app.current.runtime.registry.models["chat"]
    assert model.aliases["stable"] == "v2"
    assert model.policy.weights() == {"v2": 1.0, "v1": 0.0}
    status = await app.parts.control.controller.status("chat")
    assert status["state"] == "promoted" and status["weight"] == 100.0
    assert [h["action"] for h in status["history"]] == actions


async def test_failing_candidate_rolls_back_to_weight_zero() -> None:
    clock, store = [1000.0], MemoryControl(lambda: 0.0)
    app = build(store, clock, 0.3)
    actions = await run(app, clock, 30)
    assert actions == ["rollback"]
    assert app.current.runtime.registry.models["chat"].policy.weights()["v2"] == 0.0
    history = [json.loads(h) for h in await store.history("chat")]
    assert history[0]["rule"].startswith(("guardrail", "harm"))


async def test_a_restarted_controller_resumes_without_a_double_step() -> None:
    clock, store = [1000.0], MemoryControl(lambda: 0.0)
    first = build(store, clock, 0.0)
    actions = await run(first, clock, 200)
    assert actions[:1] == ["advance"]
    # a new process (new controller object, same store) after the first step: same history
    clock2 = [1000.0]
    second_store = MemoryControl(lambda: clock2[0])  # a dead leader's lease expires
    one = build(second_store, clock2, 0.0)
    got: list[str] = []
    while "advance" not in got:
        got += await run(one, clock2, 1)
    two = build(second_store, clock2, 0.0)  # the "restart": state comes from the store only
    rest = await run(two, clock2, 200)
    assert ["advance", *rest] == actions
    history = [json.loads(h) for h in await second_store.history("chat")]
    assert [(h["action"], h["step_from"]) for h in history] == [("advance", 0), ("promote", 1)]
    assert [h["generation"] for h in history] == [2, 3]


async def test_manual_actions_and_invalid_transitions() -> None:
    clock, store = [1000.0], MemoryControl(lambda: 0.0)
    app = build(store, clock, 0.0)
    controller = app.parts.control.controller
    await run(app, clock, 1)  # starts the canary
    assert (await controller.act("chat", "pause")).action == "pause"
    assert (await controller.status("chat"))["state"] == "paused"
    assert (await controller.act("chat", "resume")).action == "resume"
    assert (await controller.act("chat", "rollback")).rule == "manual"
    from gateway.canary.judge import InvalidTransition

    with pytest.raises(InvalidTransition):
        await controller.act("chat", "resume")
    assert app.current.runtime.registry.models["chat"].policy.weights()["v2"] == 0.0


def test_validate_prints_each_canarys_projection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli import main

    monkeypatch.setenv("V2_KEY", "secret")
    path = tmp_path / "canary.yaml"
    path.write_text(CANARY)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "canary v1 -> v2, steps 10/50 %" in out
    assert "canary projection at 10 req/s" in out and "total expected" in out


async def test_local_consecutive_failures_roll_back_at_once() -> None:
    from gateway.exchange import UPSTREAM_ERROR, Attempt, Exchange

    clock, store = [1000.0], MemoryControl(lambda: 0.0)
    app = build(store, clock, 0.0)
    control = app.parts.control
    await run(app, clock, 1)

    def exchange(reason: str, outcome: str, assigned: str = "v2") -> Exchange:
        ex = Exchange("r", "/v1/chat/completions", 0.0, "chat", routing_reason=reason)
        ex.assigned = assigned
        if assigned != "v2":  # a baseline failure retried on the candidate
            ex.attempts.append(Attempt(assigned, 0.0, False, UPSTREAM_ERROR))
        ex.attempts.append(Attempt("v2", 0.0, False, outcome))
        return ex

    for _ in range(10):
        control.observe(exchange("pinned", UPSTREAM_ERROR))  # pinned traffic never counts
    for _ in range(10):
        control.observe(exchange("canary", UPSTREAM_ERROR, assigned="v1"))  # nor retries
    assert control._streaks.get("chat", 0) == 0 and not control._tasks
    for _ in range(4):
        control.observe(exchange("canary", UPSTREAM_ERROR))
    control.observe(exchange("canary", "success"))  # the run is broken
    for _ in range(5):
        control.observe(exchange("canary", UPSTREAM_ERROR))
    await asyncio.gather(*control._tasks[-1:])
    status = await control.controller.status("chat")
    assert status["state"] == "rolled_back"
    assert [h["rule"] for h in status["history"]] == ["guardrail.consecutive_failures"]


async def test_local_fast_path_holds_off_when_the_baseline_fails_too() -> None:
    from gateway.exchange import UPSTREAM_ERROR, Attempt, Exchange

    clock, store = [1000.0], MemoryControl(lambda: 0.0)
    app = build(store, clock, 0.0)
    control = app.parts.control
    await run(app, clock, 1)

    def exchange(version: str, outcome: str) -> Exchange:
        ex = Exchange("r", "/v1/chat/completions", 0.0, "chat", routing_reason="canary")
        ex.assigned = version  # first attempts on the assigned version: canary evidence
        ex.attempts.append(Attempt(version, 0.0, False, outcome))
        return ex

    started = len(control._tasks)
    for _ in range(6):  # an incident: both versions fail, interleaved as the split sends them
        control.observe(exchange("v2", UPSTREAM_ERROR))
        for _ in range(3):
            control.observe(exchange("v1", UPSTREAM_ERROR))
    assert len(control._tasks) == started  # no local rollback started
    assert (await control.controller.status("chat"))["state"] == "progressing"
    for _ in range(5):  # the baseline recovers; the candidate alone keeps failing
        control.observe(exchange("v1", "success"))
        control.observe(exchange("v2", "success"))
    for _ in range(5):
        control.observe(exchange("v2", UPSTREAM_ERROR))
        control.observe(exchange("v1", "success"))
    await asyncio.gather(*control._tasks[-1:])
    status = await control.controller.status("chat")
    assert status["state"] == "rolled_back"


async def test_local_fast_path_counts_a_sticky_session_once_per_run() -> None:
    from gateway.exchange import UPSTREAM_ERROR, Attempt, Exchange

    clock, store = [1000.0], MemoryControl(lambda: 0.0)
    app = build(store, clock, 0.0)
    control = app.parts.control
    await run(app, clock, 1)

    def failure(session: str) -> Exchange:
        ex = Exchange("r", "/v1/chat/completions", 0.0, "chat", routing_reason="canary")
        ex.assigned, ex.session = "v2", session
        ex.attempts.append(Attempt("v2", 0.0, False, UPSTREAM_ERROR))
        return ex

    started = len(control._tasks)
    for _ in range(20):  # one heavy user whose requests all fail: not the version's fault
        control.observe(failure("heavy"))
    assert len(control._tasks) == started and control._streaks["chat"] == 1
    for user in ("u1", "u2", "u3", "u4"):  # five distinct sessions failing in a row
        control.observe(failure(user))
    await asyncio.gather(*control._tasks[started:])
    assert (await control.controller.status("chat"))["state"] == "rolled_back"
