"""The control plane of one process: apply the shared control state, and write it by CAS.

Every replica runs `ControlPlane.run()`: every `poll_s` (≤ 0.5 s) it reads each configured
model's control value and, when a generation changed, builds a new `Runtime` from the running
file config and registry view with all overrides layered over it (`Runtime.rebuilt` →
`overrides.layered`) and swaps it in. Requests in flight keep the runtime they started with, so a
stream finishes on its version.

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
from collections.abc import Callable, Mapping
from typing import Any

from gateway.control.store import ControlStore, Value
from gateway.errors import GatewayError, StoreError
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
    ) -> None:
        self.store = store
        self.current = current
        self._environ = environ
        self._on_apply = on_apply
        self.poll_s = poll_s
        self.up = True
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
        """Read every model's control value; rebuild and swap if any generation changed."""
        async with self._lock:
            models = list(self.current.runtime.config.models)
            try:
                values = {m: (await self.store.get(m))[1] for m in models}
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
        if record is not None:
            await self.store.append_history(model, json.dumps(record))
        await self.poll()
        new["generation"] = generation + 1
        return new

    async def history(self, model: str, limit: int = 500) -> list[dict[str, Any]]:
        return [json.loads(item) for item in await self.store.history(model, limit)]


def _generations(values: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    return {m: int(v.get("generation", 0)) for m, v in values.items()}
