"""The canary controller: drives the judge for every `strategy: canary` model, one leader each.

Every replica runs `CanaryController.run()`; per model only the holder of the lease
`<prefix>:{<model>}:leader` (TTL = 3 ticks, at least 2 s; the memory backend is always the
leader) acts. Each tick the leader:

1. reads the stored control value; with no state for the configured rollout it writes the
   initial one (generation 1, the cursor at the newest complete bucket);
2. adopts the stored state whenever its generation differs from the one it holds (a restart, a
   replaced leader, a manual action on any replica);
3. feeds `judge.decide` every complete bucket after the cursor (or none: `max_duration_s` still
   fires), stopping at the first transition;
4. on a transition, compare-and-sets the new state (promotion also points the promote alias at
   the candidate), appends the `DecisionRecord` to the history, logs an event and counts it.

Progress between transitions stays in the leader's memory; a new leader replays the buckets
after the stored cursor (still in the metrics window) and reaches the same state, so a handover
never doubles a step. Manual actions (`act`) go through the same compare-and-set from any
replica. Store failures skip the tick: nothing advances while Redis is away.

Beyond the judge's own actions, `act` knows two more:
- `revert` (or `rollback` of a promoted canary): the baseline back as the promote alias's target
  and the default route; the state becomes `rolled_back` with a `revert` decision record;
- `restart`: a rolled-back pair runs again as a new rollout (`rollout` n+1, from step 0, the
  cursor at the newest complete bucket). Every history record carries its rollout number; the
  status shows the current rollout's records and keeps the earlier ones.

A canary is never started anew where this replica remembers a state the store lost: the control
plane re-writes it first (`gateway.control.recovery`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from gateway.canary import judge
from gateway.canary.settings import CanarySettings
from gateway.canary.state import Action, CanaryState, DecisionRecord, Evidence
from gateway.config.canary import Canary, canary_settings
from gateway.config.routes import Model
from gateway.control.overrides import provenance, set_alias
from gateway.control.plane import Conflict, ControlPlane
from gateway.control.store import Value
from gateway.errors import ClientError, StoreError
from gateway.observability.logs import event
from gateway.runtime.overrides import canary_id, stored_canary

log = logging.getLogger("gateway.canary")
TICK_S = 0.5
MIN_LEASE_S = 2.0
MANUAL = {
    "pause": judge.pause,
    "resume": judge.resume,
    "promote": judge.promote,
    "rollback": judge.rollback,
}


class EvidenceSource(Protocol):
    def bucket_s(self, analysis_bucket_s: int) -> int: ...

    def buckets(
        self, model: str, settings: CanarySettings, bucket_s: int, after: int
    ) -> list[Evidence]: ...

    def done(self, bucket_s: int) -> int: ...


class Publisher(Protocol):
    def publish(
        self, model: str, settings: CanarySettings, state: CanaryState, now: float
    ) -> None: ...

    def decided(self, model: str, record: DecisionRecord) -> None: ...


class NoCanary(ClientError):
    status = 409
    code = "no_canary"


class CanaryController:
    def __init__(
        self,
        plane: ControlPlane,
        evidence: EvidenceSource,
        models: Callable[[], Mapping[str, Model]],
        clock: Callable[[], float],
        publisher: Publisher | None = None,
        owner: str | None = None,
        tick_s: float = TICK_S,
    ) -> None:
        self.plane = plane
        self.evidence = evidence
        self._models = models
        self._clock = clock
        self._publisher = publisher
        self.owner = owner or uuid.uuid4().hex[:12]
        self.tick_s = tick_s
        self._held: dict[str, CanaryState] = {}  # the leader's state per model
        self.leading: set[str] = set()

    def canaries(self) -> dict[str, Canary]:
        return {n: m.routing.canary for n, m in self._models().items() if m.routing.canary}

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("canary: controller tick failed")
            await asyncio.sleep(self.tick_s)

    async def tick(self) -> list[DecisionRecord]:
        """One pass over every canary model; returns the transitions this pass made."""
        records = []
        for name, canary in self.canaries().items():
            try:
                record = await self._tick_model(name, canary)
            except (StoreError, Conflict) as err:
                self._held.pop(name, None)
                log.debug("canary %s: tick skipped (%s)", name, err)
                continue
            if record is not None:
                records.append(record)
        return records

    async def _tick_model(self, name: str, canary: Canary) -> DecisionRecord | None:
        ttl = max(3 * self.tick_s, MIN_LEASE_S)
        if not await self.plane.store.lease(name, self.owner, ttl):
            self.leading.discard(name)
            self._held.pop(name, None)
            return None
        if name not in self.leading:
            self.leading.add(name)
            event(log, "canary_leader", f"canary {name}: leading", model=name, owner=self.owner)
        settings = canary_settings(canary)
        bucket_s = self.evidence.bucket_s(canary.analysis.bucket_s)
        generation, value = await self.plane.store.get(name)
        stored = stored_canary(self._models()[name], value)
        now = self._clock()
        if stored is None:
            if stored_canary(self._models()[name], self.plane.applied.get(name)) is not None:
                await self.plane.poll()  # the store lost a state this replica applied: restore
                return None
            await self._start(name, canary, settings, generation, value, now, bucket_s)
            return None
        held = self._held.get(name)
        state = held if held is not None and held.generation == stored.generation else stored
        state, record = self._judge(name, settings, state, bucket_s, now)
        self._held[name] = state
        if self._publisher is not None:
            self._publisher.publish(name, settings, state, now)
        if record is None:
            return None
        await self._commit(name, canary, generation, state, record)
        return record

    def _judge(
        self, name: str, settings: CanarySettings, state: CanaryState, bucket_s: int, now: float
    ) -> tuple[CanaryState, DecisionRecord | None]:
        if state.status in ("promoted", "rolled_back"):
            return state, None
        for ev in self.evidence.buckets(name, settings, bucket_s, state.cursor):
            state, record = judge.decide(settings, state, ev, now)
            if record is not None:
                return state, record
        return judge.decide(settings, state, None, now)

    async def _start(
        self,
        name: str,
        canary: Canary,
        settings: CanarySettings,
        generation: int,
        value: Value | None,
        now: float,
        bucket_s: int,
    ) -> None:
        state = replace(judge.initial_state(settings, now), cursor=self.evidence.done(bucket_s))
        new = {**(value or {}), "canary": state.to_dict(), "canary_id": canary_id(canary)}
        new["rollout"] = 1
        if await self.plane.store.cas(name, generation, new):
            self._held[name] = state
            event(log, "canary_start", f"canary {name}: {canary_id(canary)} started", model=name)
            await self.plane.poll()

    async def _commit(
        self, name: str, canary: Canary, generation: int, state: CanaryState, rec: DecisionRecord
    ) -> None:
        alias = canary.promote_alias
        yaml = self._models()[name].aliases.get(alias)

        def change(value: Value) -> Value:
            if rec.action == "restart":
                value["rollout"] = int(value.get("rollout", 1)) + 1
            value.update(canary=state.to_dict(), canary_id=canary_id(canary))
            target = {"promote": canary.candidate, "revert": canary.baseline}.get(rec.action)
            if target is not None:  # the promote alias follows a promotion and its revert
                source = "canary" if rec.action == "promote" else "revert"
                value = set_alias(value, alias, target, provenance(source, rec.time, None, yaml))
            return value

        try:
            await self.plane.update(name, change, generation, rec.to_dict())
        except Conflict:
            self._held.pop(name, None)  # someone else wrote: adopt the stored state next tick
            raise
        self._announce(name, rec)

    def _announce(self, name: str, rec: DecisionRecord) -> None:
        snap = rec.snapshot
        event(
            log,
            "canary_decision",
            f"canary {name}: {rec.action} ({rec.rule}): {rec.message}",
            model=name,
            action=rec.action,
            rule=rec.rule,
            status=rec.status,
            step_from=rec.step_from,
            step_to=rec.step_to,
            weight_from=rec.weight_from,
            weight_to=rec.weight_to,
            generation=rec.generation,
            candidate=snap.step_candidate.__repr__(),
            baseline=snap.step_baseline.__repr__(),
            e_harm_errors=snap.e_harm_errors,
            e_safe_errors=snap.e_safe_errors,
        )
        if self._publisher is not None:
            self._publisher.decided(name, rec)

    async def act(self, name: str, action: str, note: str = "") -> DecisionRecord:
        """A manual `pause|resume|promote|rollback|revert|restart` from the admin API (any
        replica). `rollback` of a promoted canary is a `revert`."""
        model = self._models()[name]
        canary = model.routing.canary
        if canary is None:
            raise NoCanary(f"model {name!r} has no canary")
        generation, value = await self.plane.store.get(name)
        state = stored_canary(model, value)
        if state is None:
            raise NoCanary(f"the canary of {name!r} has not started yet")
        settings = canary_settings(canary)
        now = self._clock()
        bucket_s = self.evidence.bucket_s(canary.analysis.bucket_s)
        if action == "rollback" and state.status == "promoted":
            action = "revert"
        if action in ("revert", "restart"):
            new, record = self._rerun(settings, state, action, now, note, bucket_s)
        else:
            new, record = MANUAL[action](settings, state, now, note)
        if action == "resume":  # the new step window starts after what was already seen
            new = replace(new, cursor=max(new.cursor, self.evidence.done(bucket_s)))
        await self._commit(name, canary, generation, new, record)
        return record

    def _rerun(
        self,
        settings: CanarySettings,
        state: CanaryState,
        action: str,
        now: float,
        note: str,
        bucket_s: int,
    ) -> tuple[CanaryState, DecisionRecord]:
        """`revert` a promotion (the baseline back), or `restart` a rolled-back pair afresh."""
        if action == "revert":
            if state.status != "promoted":
                raise judge.InvalidTransition(f"cannot revert a canary that is {state.status}")
            new = replace(state, status="rolled_back", generation=state.generation + 1)
            message = note or "promotion reverted: the baseline serves again"
            return new, _record(settings, state, new, "revert", message, now)
        if state.status != "rolled_back":
            raise judge.InvalidTransition(
                f"cannot restart a canary that is {state.status} (only a rolled-back one)"
            )
        new = replace(
            judge.initial_state(settings, now),
            generation=state.generation + 1,
            cursor=self.evidence.done(bucket_s),
        )
        message = note or "the rolled-back pair runs again as a new rollout from step 0"
        return new, _record(settings, state, new, "restart", message, now)

    async def guard(self, name: str, streak: int) -> DecisionRecord | None:
        """The local fast path: this replica saw `streak` candidate failures in a row (at or
        above the guardrail) — roll back by CAS now, without waiting for the leader's bucket."""
        model = self._models()[name]
        canary = model.routing.canary
        if canary is None:
            return None
        generation, value = await self.plane.store.get(name)
        state = stored_canary(model, value)
        if state is None or state.status in ("promoted", "rolled_back"):
            return None
        settings = canary_settings(canary)
        note = f"{streak} candidate failures in a row on one replica (limit "
        note += f"{canary.guardrails.consecutive_failures})"
        new, record = judge.rollback(settings, state, self._clock(), note)
        record = replace(record, rule="guardrail.consecutive_failures")
        await self._commit(name, canary, generation, new, record)
        return record

    def _applied(self, name: str, candidate: str) -> float:
        """The candidate's share in the runtime this replica routes with now (percent)."""
        policy = self.plane.current.runtime.registry.models[name].policy
        return 100.0 * policy.weights().get(candidate, 0.0)

    async def status(self, name: str) -> dict[str, Any]:
        """`GET /admin/models/{model}/canary`: the stored state and the history, oldest first."""
        model = self._models()[name]
        canary = model.routing.canary
        if canary is None:
            raise NoCanary(f"model {name!r} has no canary")
        settings = canary_settings(canary)
        generation, value = await self.plane.store.get(name)
        state = stored_canary(model, value)
        held = self._held.get(name)
        live = held if held is not None and state and held.generation == state.generation else state
        now = self._clock()
        return {
            "model": name,
            "baseline": canary.baseline,
            "candidate": canary.candidate,
            "state": state.status if state else "progressing",
            "pause_reason": state.pause_reason if state else None,
            "step": state.step if state else 0,
            "steps": [s.weight for s in canary.steps],
            "weight": judge.current_weight(settings, state) if state else settings.weight(0),
            "applied_weight": self._applied(name, canary.arms()[1]),
            "generation": generation,
            "canary_generation": state.generation if state else 0,
            "leader": name in self.leading,
            "snapshot": judge.snapshot(settings, live, now).to_dict() if live else None,
            **self._rollouts(canary, value, await self.plane.history(name)),
            "state_lost": self.plane.lost[-1] if self.plane.lost else None,
        }

    def _rollouts(
        self, canary: Canary, value: Value | None, history: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The current rollout's id and records; the earlier rollouts' records kept apart."""
        number = int((value or {}).get("rollout", 1))
        mine = [h for h in history if int(h.get("rollout", 1)) == number]
        return {
            "rollout": f"{canary_id(canary)}#{number}",
            "history": mine,
            "earlier_history": [h for h in history if int(h.get("rollout", 1)) != number],
        }


def _record(
    settings: CanarySettings,
    old: CanaryState,
    new: CanaryState,
    action: Action,
    message: str,
    now: float,
) -> DecisionRecord:
    """The decision record of a manual transition the judge does not make itself."""
    return DecisionRecord(
        time=now,
        generation=new.generation,
        action=action,
        rule="manual",
        status=new.status,
        step_from=old.step,
        step_to=new.step,
        weight_from=judge.current_weight(settings, old),
        weight_to=judge.current_weight(settings, new),
        message=message,
        snapshot=judge.snapshot(settings, old, now),
    )
