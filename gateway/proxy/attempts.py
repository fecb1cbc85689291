"""Executing a route plan: which versions get tried, in what order, and when to try again.

Owns the rules of fallback and retry (docs/architecture.md): only before the first byte reaches
the client (failures after it are reported in-band by the relay and never retried), never twice
on one version, only for the failure kinds the route's `retry.on` lists (never a client's 4xx),
at most `retry.attempts` tries, and each retry only within the model's retry budget. Pinned
requests get exactly one try on their version. Every attempt's outcome feeds the version's
health record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.types import Send

from gateway.config.routes import Retry
from gateway.config.schema import Limits
from gateway.errors import (
    GatewayError,
    Unavailable,
    UpstreamConnectError,
    UpstreamError,
    UpstreamReset,
    UpstreamStatus,
    UpstreamTimeout,
)
from gateway.exchange import SUCCESS, VERSION_FAILURES, Exchange
from gateway.observability.metrics import Metrics
from gateway.proxy.forward import Forwarder, Hold, Outgoing
from gateway.resilience.budget import RetryBudget
from gateway.resilience.health import HealthTable
from gateway.routing.table import ModelEntry, VersionEntry


def retry_kind(err: UpstreamError) -> str | None:
    """The `retry.on` name of a failure, or None if it is never retried."""
    if isinstance(err, UpstreamConnectError):
        return "connect"
    if isinstance(err, UpstreamReset):
        return "reset"
    if isinstance(err, UpstreamTimeout):
        return "timeout"
    if isinstance(err, UpstreamStatus):
        return "429" if err.upstream_status == 429 else "5xx"
    return None


def attempt_order(
    first: str, plan: tuple[str, ...], fallback: tuple[str, ...] | None
) -> tuple[str, ...]:
    """The chosen version, then the explicit fallback list (if any) or the plan's own order."""
    if fallback is None and plan[0] == first:
        return plan  # already in order (plans never repeat a version)
    rest = fallback if fallback is not None else plan[1:]
    return (first, *(v for v in rest if v != first))


class PlanRunner:
    """Runs one request's attempts; one per process, state shared by all requests."""

    def __init__(self, forwarder: Forwarder, health: HealthTable, metrics: Metrics) -> None:
        self.forwarder = forwarder
        self.health = health
        self.metrics = metrics
        self.budgets: dict[str, RetryBudget] = {}
        self.inflight: dict[tuple[str, str], int] = {}

    async def run(
        self,
        ex: Exchange,
        model: ModelEntry,
        order: Sequence[str],
        pinned: bool,
        payload: dict[str, Any] | Outgoing,
        headers: Sequence[tuple[bytes, bytes]],
        send: Send,
        limits: Limits,
    ) -> None:
        """Try the versions of `order` under the retry rules; one coroutine frame for all of it
        (every await on the request path resumes through each frame above it)."""
        budget = self.budgets.get(model.name) or self.budgets.setdefault(model.name, RetryBudget())
        retry = model.retry
        replayable = isinstance(payload, dict) or payload.replayable
        allowed = 1 if pinned or not replayable else retry.attempts
        last: GatewayError | None = None
        tried = 0
        budget.requests += 1
        try:
            for index, vid in enumerate(order):
                if tried >= allowed:
                    break
                retrying = tried > 0
                if retrying and not budget.allows(retry):
                    self.metrics.retry_budget_exhausted(model.name)
                    break
                version = model.versions[vid]
                if not self._enter(version, pinned):
                    continue
                more = tried + 1 < allowed and index + 1 < len(order)
                if retrying:
                    budget.retries += 1
                    self.metrics.retried(model.name, _kind(last))
                    if ex.trace is not None:
                        ex.trace.retried(_kind(last), vid)
                try:
                    hold = _hold(retry) if more else None
                    await self.forwarder.attempt(
                        ex, version, payload, headers, send, model.timeouts, limits, hold
                    )
                    return
                except UpstreamError as err:
                    last, tried = err, tried + 1
                    if not more or retry_kind(err) not in retry.on:
                        raise
                finally:
                    self._leave(ex, model, version)
                    if retrying:
                        budget.retries -= 1
            raise last or Unavailable(f"no version of {model.name!r} can take the request now")
        finally:
            budget.requests -= 1

    def _enter(self, version: VersionEntry, pinned: bool) -> bool:
        key = (version.model, version.id)
        count = self.inflight.get(key, 0)
        if version.max_inflight is not None and count >= version.max_inflight:
            return False
        if not pinned and not self.health.begin(version.model, version.id):
            return False
        self.inflight[key] = count + 1
        return True

    def _leave(self, ex: Exchange, model: ModelEntry, version: VersionEntry) -> None:
        """An attempt on `version` ended: its health verdict, its metrics, one fewer in flight."""
        attempt = ex.attempts[-1] if ex.attempts else None
        verdict = None
        if attempt is not None and attempt.version == version.id:
            outcome = attempt.outcome  # failed (upstream's fault), succeeded, or neither
            verdict = True if outcome in VERSION_FAILURES else False if outcome == SUCCESS else None
        self.health.record(model.name, version.id, verdict, model.ejection, model.versions)
        if attempt is not None:
            self.metrics.attempted(model.name, attempt)
        self.inflight[(version.model, version.id)] -= 1


def _hold(retry: Retry) -> Hold:
    def hold(status: int, retry_after: float | None) -> bool:
        if status == 429:
            return "429" in retry.on and (retry_after or 0.0) <= retry.max_retry_after_s
        return "5xx" in retry.on

    return hold


def _kind(err: GatewayError | None) -> str:
    return (retry_kind(err) if isinstance(err, UpstreamError) else None) or "other"
