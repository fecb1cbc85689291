"""What routing and the admin API read: a frozen snapshot of every version's recent buckets.

`Snapshot` is built in the background from one store read and replaced whole; readers never
await anything. `BucketStats` is one parsed bucket; `WindowStats` merges a version's buckets over
the stats window into the numbers operators see (rates, error rate by class, percentiles, token
throughput). The error rate is version failures over judged attempts (successes plus version
failures); client errors, cancellations and 429s are reported apart and judge nothing.

A snapshot's window is fixed when it is built (as of its own `now`, not the reader's clock), so
each version's `WindowStats` (merged counts, merged histograms, the `WINDOW_QS` percentiles) is
computed once per snapshot and shared by every reader: `StoreSync` calls `Snapshot.summarize_all`
before publishing, and `window()` memoises anything else. Shared results must not be mutated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.exchange import (
    CLIENT_CANCEL,
    CLIENT_ERROR,
    CONNECT_ERROR,
    RATE_LIMITED,
    STREAM_CUT,
    SUCCESS,
    TIMEOUT,
    UPSTREAM_ERROR,
    VERSION_FAILURES,
)
from gateway.livestats.base import (
    COMPLETION_TOKENS,
    LATENCY,
    OUTCOME,
    PROMPT_TOKENS,
    REQUESTS,
    SESSION,
    SESSION_FAILED,
    SLOW,
    TTFT,
    Fields,
)
from gateway.livestats.histogram import Histogram

FAILURE_CLASSES = (UPSTREAM_ERROR, TIMEOUT, CONNECT_ERROR, STREAM_CUT)
CLIENT_CLASSES = (CLIENT_ERROR, CLIENT_CANCEL, RATE_LIMITED)
MIN_SPAN_S = 1.0
_OUTCOME, _LATENCY, _TTFT, _SLOW, _SESSION, _SESSION_FAILED = (
    p.removesuffix(":") for p in (OUTCOME, LATENCY, TTFT, SLOW, SESSION, SESSION_FAILED)
)
WINDOW_QS = (0.50, 0.95, 0.99)  # the percentiles `WindowStats` carries precomputed (ascending)


@dataclass(frozen=True, slots=True)
class BucketStats:
    start: int
    requests: int = 0
    outcomes: Mapping[str, int] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)
    ttft: Histogram = field(default_factory=Histogram)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    slow: Mapping[int, int] = field(default_factory=dict)
    sessions: Mapping[str, int] = field(default_factory=dict)  # sticky canary evidence only
    failed_sessions: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, start: int, fields: Fields) -> BucketStats:
        """One bucket from its fields (one pass, one `partition` per field: runs for every
        bucket of every series on each refresh)."""
        outcomes: dict[str, int] = {}
        slow: dict[int, int] = {}
        sessions: dict[str, int] = {}
        failed: dict[str, int] = {}
        latency, ttft = Histogram(), Histogram()
        lat, lat_get = latency.counts, latency.counts.get
        tt, tt_get = ttft.counts, ttft.counts.get
        for name, count in fields.items():
            kind, _, arg = name.partition(":")
            if not arg:
                continue
            if kind == _LATENCY:
                if arg.isdigit():
                    index = int(arg)
                    lat[index] = lat_get(index, 0.0) + count
            elif kind == _TTFT:
                if arg.isdigit():
                    index = int(arg)
                    tt[index] = tt_get(index, 0.0) + count
            elif kind == _OUTCOME:
                outcomes[arg] = count
            elif kind == _SLOW and arg.isdigit():
                slow[int(arg)] = count
            elif kind == _SESSION:
                sessions[arg] = count
            elif kind == _SESSION_FAILED:
                failed[arg] = count
        return cls(
            start,
            fields.get(REQUESTS, 0),
            outcomes,
            latency,
            ttft,
            fields.get(PROMPT_TOKENS, 0),
            fields.get(COMPLETION_TOKENS, 0),
            slow,
            sessions,
            failed,
        )

    @property
    def successes(self) -> int:
        return self.outcomes.get(SUCCESS, 0)

    @property
    def failures(self) -> int:
        return sum(self.outcomes.get(name, 0) for name in VERSION_FAILURES)


@dataclass(frozen=True, slots=True)
class WindowStats:
    """One version's numbers over the stats window."""

    span_s: float
    requests: int
    outcomes: Mapping[str, int]
    latency: Histogram
    ttft: Histogram
    prompt_tokens: int
    completion_tokens: int
    slow: Mapping[int, int]
    latency_qs: tuple[float | None, ...]  # latency percentiles in ms at WINDOW_QS
    ttft_qs: tuple[float | None, ...]  # TTFT percentiles in ms at WINDOW_QS

    @property
    def samples(self) -> int:
        """Judged attempts: successes and version failures (what routing may trust)."""
        return self.outcomes.get(SUCCESS, 0) + self.failures

    @property
    def failures(self) -> int:
        return sum(self.outcomes.get(name, 0) for name in VERSION_FAILURES)

    def rate(self, count: float) -> float:
        return count / self.span_s

    def error_rate(self, outcome: str | None = None) -> float:
        """Version failures (of one class, or all) over judged attempts; 0 with no samples."""
        judged = self.samples
        failed = self.failures if outcome is None else self.outcomes.get(outcome, 0)
        return failed / judged if judged else 0.0

    def describe(self) -> dict[str, Any]:
        """The admin API's per-version object (weight added by the caller)."""
        successes = self.outcomes.get(SUCCESS, 0)
        p50, p95, p99 = self.latency_qs
        return {
            "samples": self.samples,
            "requests": self.requests,
            "requests_per_s": self.rate(self.requests),
            "error_rate": self.error_rate(),
            "errors": {name: self.error_rate(name) for name in FAILURE_CLASSES},
            "client_outcomes": {name: self.outcomes.get(name, 0) for name in CLIENT_CLASSES},
            "latency_p50_ms": p50,
            "latency_p95_ms": p95,
            "latency_p99_ms": p99,
            "ttft_p50_ms": self.ttft_qs[0],
            "ttft_p95_ms": self.ttft_qs[1],
            "tokens_per_s": self.rate(self.prompt_tokens + self.completion_tokens),
            "prompt_tokens_per_s": self.rate(self.prompt_tokens),
            "completion_tokens_per_s": self.rate(self.completion_tokens),
            "slow_rate": {
                str(ms): (count / successes if successes else 0.0)
                for ms, count in sorted(self.slow.items())
            },
            "window_s": self.span_s,
        }


def summarize(buckets: Sequence[BucketStats], span_s: float) -> WindowStats:
    outcomes: dict[str, int] = {}
    slow: dict[int, int] = {}
    requests = prompt = completion = 0
    for bucket in buckets:
        requests += bucket.requests
        prompt += bucket.prompt_tokens
        completion += bucket.completion_tokens
        for name, count in bucket.outcomes.items():
            outcomes[name] = outcomes.get(name, 0) + count
        for ms, count in bucket.slow.items():
            slow[ms] = slow.get(ms, 0) + count
    latency = Histogram.merged([b.latency for b in buckets])
    ttft = Histogram.merged([b.ttft for b in buckets])
    return WindowStats(
        max(span_s, MIN_SPAN_S),
        requests,
        outcomes,
        latency,
        ttft,
        prompt,
        completion,
        slow,
        tuple(latency.quantiles(WINDOW_QS)),
        tuple(ttft.quantiles(WINDOW_QS)),
    )


Series = Mapping[str, Mapping[str, tuple[BucketStats, ...]]]  # model → version → buckets


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every configured version's buckets in the window, as of `now` (shared-clock seconds)."""

    now: float
    taken: float  # monotonic time the snapshot was built
    source: str  # "memory" | "redis" | "local" (the local view while Redis is unavailable)
    bucket_s: int
    window_s: int
    series: Series = field(default_factory=dict)
    _windows: dict[tuple[str, str], WindowStats] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def buckets(self, model: str, version: str) -> tuple[BucketStats, ...]:
        return self.series.get(model, {}).get(version, ())

    def window(self, model: str, version: str) -> WindowStats:
        """The version's numbers over the window, rates over the part of it that has data
        (computed on first use, then the same object for every reader of this snapshot)."""
        found = self._windows.get((model, version))
        if found is None:
            found = summarize(self.buckets(model, version), self._span(model))
            self._windows[(model, version)] = found
        return found

    def summarize_all(self) -> None:
        """Compute every series' window now, so that no reader has to (`StoreSync` calls this
        once per snapshot, before publishing it)."""
        for model, versions in self.series.items():
            span = self._span(model)
            for version, buckets in versions.items():
                if (model, version) not in self._windows:
                    self._windows[(model, version)] = summarize(buckets, span)

    def _span(self, model: str) -> float:
        """Seconds of the window the model has data for (from its oldest bucket, any version)."""
        versions = self.series.get(model, {})
        starts = [b.start for buckets in versions.values() for b in buckets]
        first = min(starts, default=self.now)
        return self.now - max(first, self.now - self.window_s)
