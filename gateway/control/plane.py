"""The control plane of one process: apply the shared control state, and write it by CAS.

Every replica runs `ControlPlane.run()`: every `poll_s` (≤ 0.5 s) it reads each configured
model's control value and, when a generation changed, builds a new `Runtime` from the running
file config and registry view with all overrides layered over it (`Runtime.rebuilt` →
`overrides.layered`) and swaps it in. Requests in flight keep the runtime they started with, so a
stream finishes on its version.

Each poll also reads the store's epoch. When it changed, or a model value this replica applied is
gone, the shared state was lost: the replica writes back what it remembers (`recovery.restored`:
overrides and finished rollouts as they were, canaries in progress paused with reason
`state_lost`), counts `gateway_control_state_lost_total` and logs it. Overrides past their
`expires_at` are cleared by whichever replica sees it first (compare-and-set, with a history
record).

Writers (the admin API, the canary controller) call `update(model, change, expected)`: read,
check the optional expected generation, compute the new value, compare-and-set, append the audit
or decision record to the history, then apply at once locally (other replicas follow within one
poll). A lost race raises `Conflict` (409). When the store is unreachable the process keeps
serving on the last applied state; writes fail with 503 and polls retry on the next tick.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from gateway.control.overrides import clear_expired, expired
from gateway.control.recovery import needs_restore, restored
from gateway.control.store import ControlStore, Value
from gateway.errors import GatewayError, StoreError
from gateway.observability.logs import event
from gateway.runtime.current import Current
from gateway.runtime.snapshot import Runtime

log = logging.getLogger("gateway.control")
POLL_S = 0.5
Change = Callable[[Value], Value]


class Conflict(GatewayError):
    """Another writer changed the model's control state first (compare-and-set lost)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class ControlPlane:
    def __init__(
        self,
        store: ControlStore,
        current: Current,
        environ: Mapping[str, str],
        on_apply: Callable[[Runtime], None] = lambda rt: None,
        poll_s: float = POLL_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.current = current
        self._environ = environ
        self._on_apply = on_apply
        self.poll_s = poll_s
        self.wall = wall
        self.up = True
        self.epoch: str | None = None  # the store's epoch this replica saw last
        self.lost: list[dict[str, Any]] = []  # {"time", "models"} of each loss seen here
        self._lock = asyncio.Lock()

    @property
    def applied(self) -> Mapping[str, Mapping[str, Any]]:
        return self.current.runtime.overrides

    async def run(self) -> None:
        """Poll and apply until cancelled."""
        while True:
            try:
                await self.poll()
            except Exception:
                log.exception("control: applying the shared state failed")
            await asyncio.sleep(self.poll_s)

    async def poll(self) -> bool:
        """Read every model's control value (restoring a lost state, clearing expired overrides
        first); rebuild and swap if any generation changed."""
        async with self._lock:
            try:
                values = await self._read()
            except StoreError as err:
                if self.up:
                    log.warning("control: store unavailable (%s); keeping applied state", err)
                self.up = False
                return False
            if not self.up:
                log.info("control: store reachable again")
            self.up = True
            fresh = {m: v for m, v in values.items() if v is not None}
            if _generations(fresh) == _generations(self.applied):
                return False
            self._apply(fresh)
            return True

    async def _read(self) -> dict[str, Value | None]:
        models = list(self.current.runtime.config.models)
        epoch = await self.store.epoch(uuid.uuid4().hex)
        values = {m: (await self.store.get(m))[1] for m in models}
        changed = self.epoch is not None and epoch != self.epoch
        self.epoch = epoch
        if await self._restore(values, changed) | await self._expire(values):
            values = {m: (await self.store.get(m))[1] for m in models}
        return values

    async def _restore(self, values: Mapping[str, Value | None], epoch_changed: bool) -> bool:
        """Write back what this replica remembers where the store lost it (see module doc)."""
        models = self.current.runtime.config.models
        lost = [
            m
            for m, remembered in self.applied.items()
            if m in models and needs_restore(models[m], remembered, values.get(m), epoch_changed)
        ]
        if not lost:
            return False
        now = self.wall()
        self.lost.append({"time": now, "models": lost})
        self.current.runtime.metrics.canary.control_lost.inc()
        for m in lost:
            value, record = restored(models[m], self.applied[m], now)
            stored = values.get(m)
            expected = int(stored.get("generation", 0)) if stored else 0
            if await self.store.cas(m, expected, value):
                await self.store.append_history(m, json.dumps(record))
        fields = {"event": "control_state_lost", "models": lost, "epoch_changed": epoch_changed}
        log.error(
            "control: the shared control state was lost; re-wrote %s from this replica's memory "
            "(canaries in progress held paused: state_lost)",
            lost,
            extra={"fields": fields},
        )
        return True

    async def _expire(self, values: Mapping[str, Value | None]) -> bool:
        """Clear overrides past their expiry (any replica; compare-and-set, one winner)."""
        now, done = self.wall(), False
        for m, value in values.items():
            keys = expired(value, now) if value else []
            if not value or not keys:
                continue
            generation = int(value.get("generation", 0))
            if await self.store.cas(m, generation, clear_expired(dict(value), keys)):
                record = {"time": now, "action": "expire", "rule": "override.ttl", "cleared": keys}
                await self.store.append_history(m, json.dumps(record))
                event(log, "override_expired", f"{m}: expired overrides {keys} cleared", model=m,
                      cleared=keys)  # fmt: skip
            done = True
        return done

    def _apply(self, overrides: Mapping[str, Value]) -> None:
        runtime = self.current.runtime.rebuilt(self._environ, overrides=overrides)
        self.current.swap(runtime)
        self._on_apply(runtime)

    async def update(
        self, model: str, change: Change, expected: int | None = None, record: Any = None
    ) -> Value:
        """CAS-write `change(current)`; 409 if `expected` is stale or another writer won."""
        generation, value = await self.store.get(model)
        if expected is not None and expected != generation:
            raise Conflict(
                f"control state of {model!r} is at generation {generation}, not {expected}"
            )
        new = change(dict(value or {"generation": 0}))
        if not await self.store.cas(model, generation, new):
            raise Conflict(f"control state of {model!r} changed concurrently; retry")
        if record is not None:  # tagged with the rollout it belongs to (see the controller)
            record = {**record, "rollout": int(new.get("rollout", 1))}
            await self.store.append_history(model, json.dumps(record))
        await self.poll()
        new["generation"] = generation + 1
        return new

    async def history(self, model: str, limit: int = 500) -> list[dict[str, Any]]:
        return [json.loads(item) for item in await self.store.history(model, limit)]


def _generations(values: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    return {m: int(v.get("generation", 0)) for m, v in values.items()}
