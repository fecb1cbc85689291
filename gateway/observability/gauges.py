"""The live store's health and each configured version's window numbers, as Prometheus gauges.

Owns `LiveGauges`, a render callback of the metrics `Exposition`. At scrape time (never on the
request path) it reads the store sync's current state and snapshot and writes the store's health
(`gateway_store_up{backend}`, `gateway_redis_up` with the Redis backend only,
`gateway_store_snapshot_age_seconds`, `gateway_store_dropped_total{reason}`,
`gateway_store_errors_total{op}`) and, per configured version, the numbers
`GET /admin/models/{model}/stats` shows: `gateway_version_requests_per_second`,
`gateway_version_error_rate{class}`, `gateway_version_latency_seconds{q}`,
`gateway_version_ttft_seconds{q}`, `gateway_version_tokens_per_second` and
`gateway_version_samples`, all labelled `model` and `version` from the config. The window
percentiles are labelled `q`, not `quantile` (a label Prometheus reserves for summaries, which
`promtool check metrics` rejects on a gauge).

Every version's window numbers (percentiles included) come precomputed with the snapshot (summarized
once per store refresh, not per scrape) and its lines for all six families are written in one
pass; the sample-line prefixes are formatted once per config (registry) and reused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.livestats.sync import StoreSync
from gateway.livestats.window import FAILURE_CLASSES, WINDOW_QS, WindowStats
from gateway.observability.exposition import Kind, header, label_string, number
from gateway.routing.table import Registry

QUANTILES = tuple(zip(("0.5", "0.95", "0.99"), WINDOW_QS, strict=True))  # WindowStats' order
TTFT_QUANTILES = QUANTILES[:2]
ERROR_CLASSES = ("all", *FAILURE_CLASSES)

RATE = "gateway_version_requests_per_second"
ERRORS = "gateway_version_error_rate"
LATENCY = "gateway_version_latency_seconds"
TTFT = "gateway_version_ttft_seconds"
TOKENS = "gateway_version_tokens_per_second"
SAMPLES = "gateway_version_samples"
VERSION_HEADERS = (
    header(RATE, "Upstream attempts per second over the stats window", "gauge"),
    header(ERRORS, "Version failures over judged attempts, by class (all = any)", "gauge"),
    header(LATENCY, "Latency of successful attempts over the window", "gauge"),
    header(TTFT, "Time to first upstream byte over the window", "gauge"),
    header(TOKENS, "Prompt plus completion tokens per second", "gauge"),
    header(SAMPLES, "Judged attempts in the window", "gauge"),
)


@dataclass(frozen=True, slots=True)
class VersionPrefixes:
    """One version's sample-line prefixes (`name{labels} `), formatted once."""

    model: str
    version: str
    rate: str
    errors: tuple[str, ...]  # in ERROR_CLASSES order
    latency: tuple[str, ...]  # in QUANTILES order
    ttft: tuple[str, ...]  # in TTFT_QUANTILES order
    tokens: str
    samples: str

    @classmethod
    def of(cls, model: str, version: str) -> VersionPrefixes:
        base = [("model", model), ("version", version)]

        def line(name: str, *extra: tuple[str, str]) -> str:
            return f"{name}{label_string([*base, *extra])} "

        return cls(
            model,
            version,
            line(RATE),
            tuple(line(ERRORS, ("class", c)) for c in ERROR_CLASSES),
            tuple(line(LATENCY, ("q", q)) for q, _ in QUANTILES),
            tuple(line(TTFT, ("q", q)) for q, _ in TTFT_QUANTILES),
            line(TOKENS),
            line(SAMPLES),
        )


def version_lines(stats: WindowStats, p: VersionPrefixes, out: tuple[list[str], ...]) -> None:
    """Append one version's lines to the six per-family lists (in VERSION_HEADERS order)."""
    rate, errors, latency, ttft, tokens, samples = out
    rate.append(f"{p.rate}{number(stats.rate(stats.requests))}\n")
    errors.append(f"{p.errors[0]}{number(stats.error_rate())}\n")
    for prefix, name in zip(p.errors[1:], FAILURE_CLASSES, strict=True):
        errors.append(f"{prefix}{number(stats.error_rate(name))}\n")
    for prefix, value in zip(p.latency, stats.latency_qs, strict=True):
        if value is not None:
            latency.append(f"{prefix}{number(value / 1000)}\n")
    for prefix, value in zip(p.ttft, stats.ttft_qs[: len(p.ttft)], strict=True):
        if value is not None:
            ttft.append(f"{prefix}{number(value / 1000)}\n")
    tokens.append(
        f"{p.tokens}{number(stats.rate(stats.prompt_tokens + stats.completion_tokens))}\n"
    )
    samples.append(f"{p.samples}{number(stats.samples)}\n")


class LiveGauges:
    """Store health and per-version live numbers, read from the sync's state at scrape time."""

    def __init__(self, sync: StoreSync, registry: Callable[[], Registry]) -> None:
        self._sync = sync
        self._registry = registry
        self._prefixes: tuple[VersionPrefixes, ...] = ()
        self._prefixes_for: Registry | None = None

    def render(self, out: list[str]) -> None:
        self._store(out)
        families: tuple[list[str], ...] = ([], [], [], [], [], [])
        snapshot = self._sync.snapshot
        for p in self._versions():
            version_lines(snapshot.window(p.model, p.version), p, families)
        for head, lines in zip(VERSION_HEADERS, families, strict=True):
            out.append(head)
            out.extend(lines)

    def _versions(self) -> tuple[VersionPrefixes, ...]:
        """Every configured version's prefixes, rebuilt when the config (registry) changes."""
        registry = self._registry()
        if registry is not self._prefixes_for:
            self._prefixes = tuple(
                VersionPrefixes.of(model.name, vid)
                for model in registry.models.values()
                for vid in model.versions
            )
            self._prefixes_for = registry
        return self._prefixes

    def _store(self, out: list[str]) -> None:
        sync = self._sync
        backend = sync.settings.backend
        out.append(header("gateway_store_up", "1 when the live store is reachable", "gauge"))
        out.append(
            f"gateway_store_up{label_string([('backend', backend)])} {number(sync.shared_up)}\n"
        )
        if backend == "redis":
            out.append(header("gateway_redis_up", "1 when Redis is reachable", "gauge"))
            out.append(f"gateway_redis_up {number(sync.shared_up)}\n")
        age = "gateway_store_snapshot_age_seconds"
        out.append(
            header(
                age, "Seconds since the routing snapshot was last refreshed from the store", "gauge"
            )
        )
        out.append(f"{age} {number(sync.snapshot_age())}\n")
        labelled(
            out,
            "gateway_store_dropped_total",
            "Attempt outcomes never written to the store",
            "counter",
            "reason",
            sync.dropped,
        )
        labelled(
            out, "gateway_store_errors_total", "Failed store calls", "counter", "op", sync.errors
        )


def labelled(
    out: list[str], name: str, help_text: str, kind: Kind, label: str, values: Mapping[str, int]
) -> None:
    """A family with one label, from a mapping of label value to number."""
    out.append(header(name, help_text, kind))
    for key, value in values.items():
        out.append(f"{name}{label_string([(label, key)])} {number(value)}\n")
