"""Writing rollout outcomes back to the model registry: `RegistryWriteback`.

For a model whose canary comes from the registry (`routing.canary.from_registry`), a finished
rollout is written to MLflow by the replica leading that model's canary (the controller's lease,
`CanaryController.leading`):

1. tags on the candidate version: `gateway.rollout.decision` (the full `DecisionRecord`, JSON),
   `gateway.rollout.id` (`<model>/<baseline>-><candidate>`), `.decided_at` (ISO-8601 UTC),
   `.rule`, and last `gateway.rollout.outcome` (`promoted` | `rolled_back`);
2. on promotion, the baseline alias moves to the candidate; in both cases the candidate alias
   is removed;
3. on promotion, the controller's stored promote-alias override is dropped (the registry's alias
   says the same now, and must be free to move again).

It is a reconciliation, not an event handler: every tick the leader compares the applied
control state (a terminal canary) with what the registry view shows, and writes what is
missing, so a write-back interrupted by a crash, a leader change or an unreachable registry is
retried until it lands. Every call is idempotent (setting a tag or an alias to the value it
has, removing an absent alias). A failure is logged, counted and listed in `pending` (the
status page shows it) and retried next tick. Once the candidate alias is gone the next registry
read no longer derives the canary, and a version tagged `rolled_back` is never canaried again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.config.canary import Canary
from gateway.control.controller import CanaryController
from gateway.control.store import Value
from gateway.errors import GatewayError, RegistryError
from gateway.modelregistry.client import MlflowClient
from gateway.modelregistry.view import OUTCOME_TAG, ModelView
from gateway.observability.logs import event
from gateway.observability.registry import RegistryMetrics
from gateway.runtime.overrides import canary_id, stored_canary

log = logging.getLogger("gateway.registry")
TICK_S = 1.0
OUTCOMES = frozenset({"promoted", "rolled_back"})  # terminal canary states = outcome tags
TAG = "gateway.rollout."


class RegistryWriteback:
    def __init__(
        self,
        client: MlflowClient,
        controller: CanaryController,
        metrics: RegistryMetrics,
        refresh: Callable[[], Awaitable[bool]],
        tick_s: float = TICK_S,
    ) -> None:
        self.client = client
        self.controller = controller
        self._metrics = metrics
        self._refresh = refresh  # re-read the registry once a write-back landed
        self.tick_s = tick_s
        self.pending: dict[str, dict[str, Any]] = {}  # model → the write-back still failing
        self.written: dict[str, dict[str, Any]] = {}  # model → the last write-back that landed

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.tick()
            except Exception:
                log.exception("registry: write-back tick failed")

    async def tick(self) -> list[str]:
        """Write every finished registry rollout this replica leads; returns the models written."""
        runtime = self.controller.plane.current.runtime
        done = []
        for name, model in runtime.file_config.models.items():
            canary = model.routing.canary
            effective = runtime.config.models.get(name)
            if canary is None or canary.from_registry is None or effective is None:
                continue
            arms = effective.routing.canary
            view = runtime.view.models.get(name) if runtime.view else None
            state = stored_canary(effective, runtime.overrides.get(name))
            if arms is None or view is None or state is None:
                continue
            if state.status not in OUTCOMES or name not in self.controller.leading:
                continue
            if await self._write(name, canary, arms, view, state.status):
                done.append(name)
        return done

    async def _write(
        self, name: str, source: Canary, arms: Canary, view: ModelView, outcome: str
    ) -> bool:
        assert source.from_registry is not None
        baseline_alias = source.from_registry.baseline_alias
        candidate_alias = source.from_registry.candidate_alias
        baseline, candidate = arms.arms()
        rollout = f"{name}/{canary_id(arms)}"
        if self.written.get(name, {}).get("rollout") == rollout:
            return False  # landed; the next registry read drops the canary
        try:
            record = await self._record(name)
            tags = {
                TAG + "decision": json.dumps(record, sort_keys=True, default=str),
                TAG + "id": rollout,
                TAG + "decided_at": _iso(record.get("time")),
                TAG + "rule": str(record.get("rule", "")),
                OUTCOME_TAG: outcome,
            }
            for key, value in tags.items():
                await self.client.set_version_tag(view.registered, candidate, key, value)
            if outcome == "promoted":
                await self.client.set_alias(view.registered, baseline_alias, candidate)
            await self.client.delete_alias(view.registered, candidate_alias)
            if outcome == "promoted":
                await self._drop_override(name, arms, candidate)
        except GatewayError as err:
            self._failed(name, rollout, outcome, err)
            return False
        self.pending.pop(name, None)
        self.written[name] = {"rollout": rollout, "outcome": outcome, "candidate": candidate}
        self._metrics.writebacks.labels(name, outcome).inc()
        event(
            log,
            "registry_writeback",
            f"registry: rollout {rollout} written back ({outcome})",
            model=name,
            rollout=rollout,
            outcome=outcome,
            baseline=baseline,
            candidate=candidate,
        )
        await self._refresh()
        return True

    async def _record(self, name: str) -> dict[str, Any]:
        """The decision that ended the rollout (the newest terminal record in the history)."""
        for record in reversed(await self.controller.plane.history(name)):
            if record.get("status") in OUTCOMES:
                return dict(record)
        raise RegistryError(f"no terminal decision in the history of {name!r} yet")

    async def _drop_override(self, name: str, arms: Canary, candidate: str) -> None:
        def change(value: Value) -> Value:
            aliases = dict(value.get("aliases") or {})
            if aliases.get(arms.promote_alias) == candidate:
                del aliases[arms.promote_alias]
            value["aliases"] = aliases
            return value

        _, value = await self.controller.plane.store.get(name)
        if (value or {}).get("aliases", {}).get(arms.promote_alias) == candidate:
            await self.controller.plane.update(name, change)

    def _failed(self, name: str, rollout: str, outcome: str, err: GatewayError) -> None:
        attempts = self.pending.get(name, {}).get("attempts", 0) + 1
        self.pending[name] = {
            "rollout": rollout,
            "outcome": outcome,
            "error": err.message,
            "attempts": attempts,
        }
        self._metrics.error("writeback")
        if attempts == 1 or attempts % 30 == 0:
            log.warning("registry: write-back of %s failed (%s); retrying", rollout, err.message)

    def status(self) -> dict[str, Any]:
        return {"pending": dict(self.pending), "written": dict(self.written)}


def _iso(when: Any) -> str:
    seconds = float(when) if isinstance(when, int | float) else 0.0
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()
