"""Wiring the control plane and the canary controller into one process.

`build_control` picks the control store from the `store` config (memory: this process only;
redis: the same URL, cluster flag, key prefix and timeout as the metrics store), and builds the
`ControlPlane` (apply loop, CAS writes) and the `CanaryController` reading evidence from the live
metrics snapshot. `Control.start()` applies the stored state once (bounded by the store timeout)
and starts both loops; `stop()` cancels them. The app's lifespan (`gateway/app.py`) owns it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from gateway.canary.judge import incident
from gateway.canary.state import ArmCounts
from gateway.config.canary import canary_settings
from gateway.control.controller import CanaryController
from gateway.control.evidence import SnapshotEvidence
from gateway.control.plane import ControlPlane
from gateway.control.store import ControlStore, MemoryControl, RedisControl
from gateway.errors import GatewayError, StoreError
from gateway.exchange import VERSION_FAILURES, Exchange
from gateway.infra.tasks import cancel_all
from gateway.livestats import StoreSync
from gateway.observability.canary import CanaryMetrics
from gateway.runtime.current import Current
from gateway.runtime.overrides import stored_canary
from gateway.runtime.snapshot import Runtime

log = logging.getLogger("gateway.control")
SETTLE_MARGIN_S = 0.25


def publish_applied(runtime: Runtime) -> None:
    """Every replica's canary gauges (step, weight, state) from the applied control state."""
    for name, model in runtime.config.models.items():
        canary = model.routing.canary
        state = stored_canary(model, runtime.overrides.get(name))
        if canary is not None and state is not None:
            runtime.metrics.canary.publish(name, canary_settings(canary), state)


class Control:
    def __init__(
        self, plane: ControlPlane, controller: CanaryController, metrics: CanaryMetrics
    ) -> None:
        self.plane = plane
        self.controller = controller
        self._metrics = metrics
        self._tasks: list[asyncio.Task[None]] = []
        self._streaks: dict[str, int] = {}  # model → candidate failures in a row, this replica
        self._beside: dict[str, tuple[int, int]] = {}  # baseline (requests, failures) in that run
        self._in_run: dict[str, set[str]] = {}  # sticky sessions already counted in that run
        self._guarding: set[str] = set()

    def observe(self, ex: Exchange) -> None:
        """The request path's O(1) hook, on canary evidence only (the first attempt of a request,
        on the version the split assigned; retries never count): count the candidate's failures
        in a row, and the baseline's requests and failures since that run began; at the
        guardrail, unless the baseline fails too (an incident: the leader's bucket judgement
        pauses instead), start one rollback by CAS (the local fast path)."""
        if ex.routing_reason != "canary" or ex.model is None or not ex.attempts:
            return
        canary = self.plane.current.runtime.config.models[ex.model].routing.canary
        first = ex.attempts[0]
        counter = self._metrics.attempts
        for attempt in ex.attempts:
            role = "evidence" if attempt is first and first.version == ex.assigned else "retry"
            counter.labels(ex.model, attempt.version, role).inc()
        if canary is None or first.version != ex.assigned:
            return
        streak = self._streaks.get(ex.model, 0)
        seen, failed = self._beside.get(ex.model, (0, 0))
        bad = first.outcome in VERSION_FAILURES
        if first.version == canary.candidate:
            seen, failed = (0, 0) if streak == 0 or not bad else (seen, failed)
            streak = self._run(ex.model, streak, bad, ex.session)
        elif first.version == canary.baseline:
            seen, failed = seen + 1, failed + bad
        self._streaks[ex.model], self._beside[ex.model] = streak, (seen, failed)
        limit = canary.guardrails.consecutive_failures
        if streak >= limit and ex.model not in self._guarding:
            run, beside = ArmCounts(streak, streak), ArmCounts(seen, failed)
            if incident(canary_settings(canary), run, beside, ArmCounts()):
                return
            self._guarding.add(ex.model)
            task = asyncio.get_running_loop().create_task(self._guard(ex.model, streak))
            self._tasks.append(task)

    def _run(self, model: str, streak: int, bad: bool, session: str | None) -> int:
        """The candidate's run after this evidence request; with a sticky key a session counts
        once per run (one user's repeated failures are not the version's)."""
        if not bad:
            self._in_run.pop(model, None)
            return 0
        if not session:
            return streak + 1
        counted = self._in_run.setdefault(model, set())
        if streak == 0:
            counted.clear()
        if session in counted:
            return streak
        counted.add(session)
        return streak + 1

    async def _guard(self, model: str, streak: int) -> None:
        try:
            await self.controller.guard(model, streak)
        except GatewayError as err:  # store down or a race: the leader's buckets still count
            log.warning("canary %s: local guardrail rollback failed: %s", model, err.message)
        finally:
            self._streaks[model] = 0
            self._guarding.discard(model)

    async def start(self) -> None:
        try:
            await self.plane.poll()
            await self._check_persistence()
        except StoreError as err:
            log.warning("control: initial read failed (%s); starting from the file config", err)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.plane.run()),
            loop.create_task(self.controller.run()),
        ]

    async def _check_persistence(self) -> None:
        """Warn when canaries keep their decisions in a Redis that forgets them on restart."""
        if self.plane.store.name != "redis" or not self.controller.canaries():
            return
        found = await self.plane.store.persistence()
        if found is None:
            log.info("control: could not read Redis persistence settings (CONFIG disabled?)")
        elif found.get("appendonly") != "yes" and not found.get("save", "").strip():
            log.warning(
                "control: Redis has no persistence (appendonly=%s, save=%r): a Redis restart "
                "loses canary decisions and overrides; the gateway then holds canaries paused "
                "(state_lost). Run Redis with --appendonly yes (docs/operations.md)",
                found.get("appendonly"),
                found.get("save"),
            )

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)
        await self.plane.store.aclose()


def build_control(
    current: Current, sync: StoreSync, environ: Mapping[str, str], publisher: CanaryMetrics
) -> Control:
    settings = sync.settings
    store: ControlStore
    if settings.backend == "redis":
        store = RedisControl(
            settings.url(environ),
            cluster=settings.cluster,
            prefix=settings.key_prefix,
            timeout_s=settings.timeout_ms / 1000,
        )
    else:
        store = MemoryControl()
    plane = ControlPlane(store, current, environ, on_apply=publish_applied)
    evidence = SnapshotEvidence(
        lambda: sync.snapshot, settings.bucket_s, settings.flush_interval_s + SETTLE_MARGIN_S
    )
    controller = CanaryController(
        plane,
        evidence,
        lambda: current.runtime.config.models,
        sync.clock.now,
        publisher=publisher,
    )
    return Control(plane, controller, publisher)
