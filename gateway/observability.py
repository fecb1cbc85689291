"""Prometheus metrics: names, bounded labels, and the recorder the request path reports to.

Owns its own `CollectorRegistry` (no global state). `model` and `version` label values come only
from the config; anything else is `other` (and `none` where no version was chosen), so client
input can never create series. Label children are cached so recording a request is a few dict
lookups and increments. `LiveCollector` exports the live store's health and, per configured
version, the same numbers as `GET /admin/models/{model}/stats`, computed at scrape time from the
current snapshot (nothing on the request path).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.exchange import Attempt, Exchange
from gateway.logs import event
from gateway.registry import Registry
from gateway.rollout.metrics import CanaryMetrics
from gateway.store.window import FAILURE_CLASSES

if TYPE_CHECKING:
    from gateway.store.sync import StoreSync

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
OTHER = "other"
LOG = logging.getLogger("gateway.health")


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "gateway_requests",
            "Client requests by model, serving version and outcome class",
            ["model", "version", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from request arrival to the last byte sent",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "gateway_ttft_seconds",
            "Time from request arrival to the first byte sent to the client",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "Time to first byte not spent waiting on the upstream",
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "gateway_tokens",
            "Tokens reported by upstream usage blocks",
            ["model", "version", "kind"],
            registry=r,
        )
        self.weight = Gauge(
            "gateway_routing_weight",
            "Share of new traffic routing gives each version now (0-1)",
            ["model", "version"],
            registry=r,
        )
        self.inflight = Gauge("gateway_inflight", "Client requests in progress", registry=r)
        self.upstream = Counter(
            "gateway_upstream_requests",
            "Upstream attempts by model, version and outcome class",
            ["model", "version", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "gateway_retries",
            "Retries onto another version, by the failure that caused them",
            ["model", "reason"],
            registry=r,
        )
        self.budget_exhausted = Counter(
            "gateway_retry_budget_exhausted",
            "Retries refused by the retry budget",
            ["model"],
            registry=r,
        )
        self.ejections = Counter(
            "gateway_ejections",
            "Versions ejected for consecutive failures",
            ["model", "version"],
            registry=r,
        )
        self.panic_mode = Gauge(
            "gateway_panic_mode",
            "1 while every version of a model is failing",
            ["model"],
            registry=r,
        )
        self.rejected = Counter(
            "gateway_rejected",
            "Requests refused by the gateway itself, by reason",
            ["reason"],
            registry=r,
        )
        self.config_info = Gauge(
            "gateway_config_info", "The config revision in use (value 1)", ["revision"], registry=r
        )
        self.reloads = Counter(
            "gateway_config_reloads", "Config reload attempts by result", ["result"], registry=r
        )
        self.canary = CanaryMetrics(r)
        self._known: frozenset[tuple[str, str]] = frozenset()
        self._children: dict[tuple[str, str, str], Callable[[Exchange], None]] = {}

    def use_registry(self, registry: Registry, revision: str) -> None:
        """Adopt a (new) config: the label values it allows, its weights and revision."""
        self.config_info.clear()
        self.config_info.labels(revision).set(1)
        self._known = frozenset(
            (m.name, v) for m in registry.models.values() for v in (*m.versions, "none")
        )
        self._children.clear()
        self.publish_weights(registry)

    def publish_weights(self, registry: Registry) -> None:
        """Set `gateway_routing_weight` to the shares routing gives each version now."""
        for model in registry.models.values():
            for vid, share in model.policy.weights().items():
                self.weight.labels(model.name, vid).set(share)

    def watch_live(self, sync: StoreSync, registry: Callable[[], Registry]) -> None:
        self.registry.register(LiveCollector(sync, registry))

    def record(self, ex: Exchange) -> None:
        if ex.reason:
            self.rejected.labels(ex.reason).inc()
        key = (ex.model or OTHER, ex.version or "none", ex.outcome)
        observe = self._children.get(key)
        if observe is None:
            observe = self._children[key] = self._bind(*key)
        observe(ex)

    def _bind(self, model: str, version: str, outcome: str) -> Callable[[Exchange], None]:
        if (model, version) not in self._known:
            model, version = (OTHER, OTHER) if model != OTHER else (OTHER, "none")
        count = self.requests.labels(model, version, outcome).inc
        duration = self.duration.labels(model, version).observe
        ttft = self.ttft.labels(model, version).observe
        prompt = self.tokens.labels(model, version, "prompt").inc
        completion = self.tokens.labels(model, version, "completion").inc
        overhead = self.overhead.observe

        def observe(ex: Exchange) -> None:
            count()
            duration(ex.duration)
            if ex.ttft is not None:
                ttft(ex.ttft)
                overhead(max(ex.ttft - ex.upstream_wait, 0.0))
            if ex.prompt_tokens:
                prompt(ex.prompt_tokens)
            if ex.completion_tokens:
                completion(ex.completion_tokens)

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
        return generate_latest(self.registry)


QUANTILES = (("0.5", 0.50), ("0.95", 0.95), ("0.99", 0.99))


class LiveCollector:
    """Store health and per-version live numbers, read from the sync's state at scrape time."""

    def __init__(self, sync: StoreSync, registry: Callable[[], Registry]) -> None:
        self._sync = sync
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        sync = self._sync
        backend = sync.settings.backend
        up = GaugeMetricFamily(
            "gateway_store_up", "1 when the live store is reachable", labels=["backend"]
        )
        up.add_metric([backend], 1.0 if sync.shared_up else 0.0)
        yield up
        if backend == "redis":
            yield GaugeMetricFamily(
                "gateway_redis_up", "1 when Redis is reachable", value=float(sync.shared_up)
            )
        yield GaugeMetricFamily(
            "gateway_store_snapshot_age_seconds",
            "Seconds since the routing snapshot was last refreshed from the store",
            value=sync.snapshot_age(),
        )
        yield _labelled(
            CounterMetricFamily,
            "gateway_store_dropped",
            "Attempt outcomes never written to the store",
            "reason",
            sync.dropped,
        )
        yield _labelled(
            CounterMetricFamily, "gateway_store_errors", "Failed store calls", "op", sync.errors
        )
        yield from self._versions()

    def _versions(self) -> Iterator[Metric]:
        snapshot = self._sync.snapshot
        labels = ["model", "version"]
        rate = GaugeMetricFamily(
            "gateway_version_requests_per_second",
            "Upstream attempts per second over the stats window",
            labels=labels,
        )
        errors = GaugeMetricFamily(
            "gateway_version_error_rate",
            "Version failures over judged attempts, by class (all = any)",
            labels=[*labels, "class"],
        )
        latency = GaugeMetricFamily(
            "gateway_version_latency_seconds",
            "Latency of successful attempts over the window",
            labels=[*labels, "quantile"],
        )
        ttft = GaugeMetricFamily(
            "gateway_version_ttft_seconds",
            "Time to first upstream byte over the window",
            labels=[*labels, "quantile"],
        )
        tokens = GaugeMetricFamily(
            "gateway_version_tokens_per_second",
            "Prompt plus completion tokens per second",
            labels=labels,
        )
        samples = GaugeMetricFamily(
            "gateway_version_samples", "Judged attempts in the window", labels=labels
        )
        for model in self._registry().models.values():
            for vid in model.versions:
                stats, key = snapshot.window(model.name, vid), [model.name, vid]
                rate.add_metric(key, stats.rate(stats.requests))
                tokens.add_metric(key, stats.rate(stats.prompt_tokens + stats.completion_tokens))
                samples.add_metric(key, stats.samples)
                errors.add_metric([*key, "all"], stats.error_rate())
                for name in FAILURE_CLASSES:
                    errors.add_metric([*key, name], stats.error_rate(name))
                for label, q in QUANTILES:
                    if (value := stats.latency.quantile(q)) is not None:
                        latency.add_metric([*key, label], value / 1000)
                    if q < 0.99 and (value := stats.ttft.quantile(q)) is not None:
                        ttft.add_metric([*key, label], value / 1000)
        yield from (rate, errors, latency, ttft, tokens, samples)


def _labelled(
    kind: type[CounterMetricFamily], name: str, doc: str, label: str, values: dict[str, int]
) -> Metric:
    family = kind(name, doc, labels=[label])
    for key, value in values.items():
        family.add_metric([key], float(value))
    return family
