"""Shadow traffic: copy a share of a model's requests to a version and throw its answers away.

`routing.shadow: {version, percent}`. After the client's request is decided, `Shadow.maybe`
draws from the seeded RNG and, for `percent` % of requests, starts a background copy to the
shadow version — synchronous and O(1) on the request path. Copies are bounded (`limit` in flight
per process): when full the copy is dropped and counted, never queued. A copy is sent as the
client sent it (a streamed request is streamed, read to the end and discarded), with its own
request id suffix, the version's own timeouts, and no retries or fallback. It never delays or
fails the client's request: it shares nothing with it but the event loop and the connection
pool. Its attempt is recorded only under the series `<version>#shadow` (so routing and the
canary never see it) and in `gateway_shadow_requests_total{model,version,outcome}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from random import Random
from time import perf_counter
from typing import Any

from starlette.types import Message

from gateway.errors import GatewayError
from gateway.exchange import Attempt, Exchange
from gateway.infra.tasks import cancel_all
from gateway.livestats.base import SHADOW_TAG
from gateway.proxy.forward import Forwarder
from gateway.runtime.snapshot import Runtime

log = logging.getLogger("gateway.shadow")
LIMIT = 32
Record = Callable[[str, Sequence[Attempt], str], None]


async def _discard(message: Message) -> None:
    return None


class Shadow:
    def __init__(self, forwarder: Forwarder, record: Record, rng: Random, limit: int = LIMIT):
        self._forwarder = forwarder
        self._record = record
        self._rng = rng
        self.limit = limit
        self.tasks: set[asyncio.Task[None]] = set()

    def maybe(
        self,
        rt: Runtime,
        model: str,
        payload: dict[str, Any],
        headers: Sequence[tuple[bytes, bytes]],
        ex: Exchange,
    ) -> None:
        """Start a copy of this request if the model shadows and the draw says so."""
        shadow = rt.config.models[model].routing.shadow
        if shadow is None or self._rng.random() * 100.0 >= shadow.percent:
            return
        if len(self.tasks) >= self.limit:
            rt.metrics.canary.shadow.labels(model, shadow.version, "dropped").inc()
            return
        copy = Exchange(f"{ex.request_id}-shadow", ex.path, perf_counter(), model, stream=ex.stream)
        task = asyncio.get_running_loop().create_task(
            self._copy(rt, model, shadow.version, dict(payload), list(headers), copy)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _copy(
        self,
        rt: Runtime,
        model: str,
        vid: str,
        payload: dict[str, Any],
        headers: list[tuple[bytes, bytes]],
        ex: Exchange,
    ) -> None:
        entry = rt.registry.models[model]
        try:
            await self._forwarder.attempt(
                ex, entry.versions[vid], payload, headers, _discard, entry.timeouts, rt.limits
            )
        except GatewayError as err:
            log.debug("shadow copy to %s@%s failed: %s", model, vid, err.message)
        finally:
            outcome = ex.attempts[-1].outcome if ex.attempts else "rejected"
            rt.metrics.canary.shadow.labels(model, vid, outcome).inc()
            if ex.attempts:
                self._record(model, ex.attempts, SHADOW_TAG)

    async def stop(self) -> None:
        await cancel_all(list(self.tasks))
