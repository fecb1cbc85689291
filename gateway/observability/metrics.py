"""Prometheus metrics: names, bounded labels, and the recorder the request path reports to.

Owns the gateway's metric families (an `Exposition`, no global state) and what one scrape
writes: prometheus_client's process and platform collectors (in a `CollectorRegistry` of their
own), then the gateway's families, the canary's, and the live gauges (`gateway.live_metrics`).
`model`, `version` and `key` label values come only from the config; anything else is `other`
(`none` where no version was chosen, `anonymous` for a request no configured key made), so client
input can never create series. Latency histograms observe only requests an upstream answered
(a version was chosen): the gateway's own refusals are counted by `gateway_requests_total`'s
`outcome` (`rejected`, `throttled`, `client_error`) and never draw a latency line. Each (model,
version, outcome, key) is bound once per config to its series, so recording a request is a dict
lookup and a few list and attribute increments.

Bucket upper bounds, in seconds (+Inf implied):
  gateway_request_duration_seconds, gateway_ttft_seconds: `LATENCY_BUCKETS`
      5 ms, 10 ms, 25 ms, 50 ms, 100 ms, 250 ms, 500 ms, 1, 2.5, 5, 10, 30, 60, 120
  gateway_overhead_seconds: `OVERHEAD_BUCKETS`
      0.1 ms, 0.25 ms, 0.5 ms, 1 ms, 2.5 ms, 5 ms, 10 ms, 25 ms, 100 ms

Only the Prometheus text format 0.0.4 is served (no OpenMetrics negotiation).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from gateway.exchange import SUCCESS, Attempt, Exchange
from gateway.livestats.sync import StoreSync
from gateway.observability.canary import CanaryMetrics
from gateway.observability.exposition import Exposition
from gateway.observability.gauges import LiveGauges
from gateway.observability.logs import event
from gateway.observability.registry import RegistryMetrics
from gateway.ratelimit.fallback import REASONS as RATELIMIT_FALLBACK_REASONS
from gateway.routing.table import Registry

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
OTHER = "other"
NONE = "none"
ANONYMOUS = "anonymous"  # the `key` label of requests no configured key made (open gateway, 401)
LOG = logging.getLogger("gateway.health")


class Metrics:
    def __init__(self) -> None:
        self.process = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.process)
        PlatformCollector(registry=self.process)
        self.exposition = x = Exposition()
        mv = ("model", "version")
        self.requests = x.counter(
            "gateway_requests_total",
            "Client requests by model, serving version, outcome class and client key id",
            (*mv, "outcome", "key"),
        )
        self.duration = x.histogram(
            "gateway_request_duration_seconds",
            "Time from request arrival to the last byte sent",
            LATENCY_BUCKETS,
            mv,
        )
        self.ttft = x.histogram(
            "gateway_ttft_seconds",
            "Time from request arrival to the first byte sent to the client",
            LATENCY_BUCKETS,
            mv,
        )
        self.overhead = x.histogram(
            "gateway_overhead_seconds",
            "Time to first byte not spent waiting on the upstream",
            OVERHEAD_BUCKETS,
        ).labels()
        self.tokens = x.counter(
            "gateway_tokens_total",
            "Tokens from upstream usage blocks (or the estimate without one), by client key id",
            (*mv, "kind", "key"),
        )
        self.weight = x.gauge(
            "gateway_routing_weight",
            "Share of new traffic routing gives each version now (0-1)",
            mv,
        )
        self.inflight = x.gauge("gateway_inflight", "Client requests in progress").labels()
        self.count_inflight: Callable[[], int] = lambda: 0  # the gateway's count, read at scrape
        self.pending_body_bytes = x.gauge(
            "gateway_pending_body_bytes",
            "Bytes held by request bodies still arriving (capped by max_pending_body_bytes)",
        ).labels()
        self.count_pending_body_bytes: Callable[[], int] = lambda: 0  # read at scrape
        self.upstream = x.counter(
            "gateway_upstream_requests_total",
            "Upstream attempts by model, version and outcome class",
            (*mv, "outcome"),
        )
        self._resilience(x)
        self._security(x)
        self.config_info = x.gauge(
            "gateway_config_info", "The config revision in use (value 1)", ("revision",)
        )
        self.reloads = x.counter(
            "gateway_config_reloads_total", "Config reload attempts by result", ("result",)
        )
        self.canary = CanaryMetrics(x)
        self.registry = RegistryMetrics(x)
        self._known: frozenset[tuple[str, str]] = frozenset()
        self._keys: frozenset[str] = frozenset()
        self._children: dict[tuple[str, str, str, str], Callable[[Exchange], None]] = {}

    def _resilience(self, x: Exposition) -> None:
        self.retries = x.counter(
            "gateway_retries_total",
            "Retries onto another version, by the failure that caused them",
            ("model", "reason"),
        )
        self.budget_exhausted = x.counter(
            "gateway_retry_budget_exhausted_total",
            "Retries refused by the retry budget",
            ("model",),
        )
        self.ejections = x.counter(
            "gateway_ejections_total",
            "Versions ejected for consecutive failures",
            ("model", "version"),
        )
        self.panic_mode = x.gauge(
            "gateway_panic_mode", "1 while every version of a model is failing", ("model",)
        )
        self.rejected = x.counter(
            "gateway_rejected_total",
            "Requests refused by the gateway itself, by reason",
            ("reason",),
        )

    def _security(self, x: Exposition) -> None:
        self.ratelimit_fallbacks = x.counter(
            "gateway_ratelimit_fallback_total",
            "Limited requests judged by the local fallback limiter instead of Redis, by reason",
            ("reason",),
        )
        for reason in RATELIMIT_FALLBACK_REASONS:
            self.ratelimit_fallbacks.labels(reason)
        self.ratelimit_breaker = x.gauge(
            "gateway_ratelimit_breaker_open",
            "1 while the shared rate limiter's Redis breaker is open (limits judged locally)",
        ).labels()

        self.admin_auth_failures = x.counter(
            "gateway_admin_auth_failures_total",
            "Admin authentications refused: a wrong token (rejected) or a throttled address",
            ("result",),
        )
        for result in ("rejected", "throttled"):
            self.admin_auth_failures.labels(result)

    def admin_auth_failed(self, result: str) -> None:
        self.admin_auth_failures.labels(result).inc()

    def ratelimit_fallback(self, reason: str) -> None:
        self.ratelimit_fallbacks.labels(reason).inc()

    def ratelimit_breaker_open(self, is_open: bool) -> None:
        self.ratelimit_breaker.set(1 if is_open else 0)

    def use_registry(self, registry: Registry, revision: str, keys: Iterable[str] = ()) -> None:
        """Adopt a (new) config: the label values it allows (its models, versions and client key
        ids), its weights and revision. The series of every (model, version, key) that can serve
        are bound here, once, so the request path only looks them up."""
        self.config_info.clear()
        self.config_info.labels(revision).set(1)
        self._known = frozenset(
            (m.name, v) for m in registry.models.values() for v in (*m.versions, NONE)
        )
        self._keys = frozenset((*keys, ANONYMOUS))
        self._children.clear()
        for model, version in self._known:
            for key in self._keys:
                if version != NONE:
                    self._child((model, version, SUCCESS, key))
        self.publish_weights(registry)

    def publish_weights(self, registry: Registry) -> None:
        """Set `gateway_routing_weight` to the shares routing gives each version now."""
        for model in registry.models.values():
            for vid, share in model.policy.weights().items():
                self.weight.labels(model.name, vid).set(share)

    def watch_live(self, sync: StoreSync, registry: Callable[[], Registry]) -> None:
        """Write the live store's health and per-version gauges on every scrape."""
        self.exposition.add_render(LiveGauges(sync, registry).render)

    def record(self, ex: Exchange) -> None:
        if ex.reason:
            self.rejected.labels(ex.reason).inc()
        labels = (ex.model or OTHER, ex.version or NONE, ex.outcome, ex.client or ANONYMOUS)
        observe = self._children.get(labels) or self._child(labels)
        observe(ex)

    def _child(self, labels: tuple[str, str, str, str]) -> Callable[[Exchange], None]:
        observe = self._children[labels] = self._bind(*labels)
        return observe

    def _bind(self, model: str, version: str, outcome: str, key: str) -> Callable[[Exchange], None]:
        if (model, version) not in self._known:
            model, version = (OTHER, OTHER) if model != OTHER else (OTHER, NONE)
        if key not in self._keys:
            key = OTHER
        count = self.requests.labels(model, version, outcome, key)
        prompt = self.tokens.labels(model, version, "prompt", key)
        completion = self.tokens.labels(model, version, "completion", key)
        if version == NONE:  # refused before any upstream: counted, never a latency line

            def refused(ex: Exchange) -> None:
                count.value += 1

            return refused
        duration = self.duration.labels(model, version).observe
        ttft = self.ttft.labels(model, version).observe
        overhead = self.overhead.observe

        def observe(ex: Exchange) -> None:
            count.value += 1
            duration(ex.duration)
            if ex.ttft is not None:
                ttft(ex.ttft)
                overhead(max(ex.ttft - ex.upstream_wait, 0.0))
            if ex.prompt_tokens:
                prompt.value += ex.prompt_tokens
            if ex.completion_tokens:
                completion.value += ex.completion_tokens

        return observe

    def attempted(self, model: str, attempt: Attempt) -> None:
        self.upstream.labels(model, attempt.version, attempt.outcome).inc()

    def retried(self, model: str, reason: str) -> None:
        self.retries.labels(model, reason).inc()

    def retry_budget_exhausted(self, model: str) -> None:
        self.budget_exhausted.labels(model).inc()

    def ejected(self, model: str, version: str) -> None:
        self.ejections.labels(model, version).inc()
        event(LOG, "ejection", f"version {model}@{version} ejected", model=model, version=version)

    def panic(self, model: str, on: bool) -> None:
        self.panic_mode.labels(model).set(1 if on else 0)
        event(LOG, "panic", f"model {model} panic mode {'on' if on else 'off'}", model=model, on=on)

    def scrape(self) -> bytes:
        """One scrape in the Prometheus text format 0.0.4."""
        self.inflight.set(self.count_inflight())
        self.pending_body_bytes.set(self.count_pending_body_bytes())
        return generate_latest(self.process) + self.exposition.render().encode()
