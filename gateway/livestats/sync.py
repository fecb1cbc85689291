"""Keeping the live-metrics store off the request path: the batch, the flush and refresh loops.

`record_exchange()` is the only thing the request path calls: synchronous, it adds the
request's attempts to the current batch's per-bucket counters (a few dictionary increments;
nothing of the request is kept), or counts them as dropped once the batch holds `buffer_size`
requests. In the background, every `flush_interval_s` the batch is swapped out, added to the
local `MemoryStore` and, with Redis, sent as one pipelined write; every `refresh_interval_s` a
new `Snapshot` is read (from Redis, or from the local store when Redis is unavailable or not
configured), every series' window numbers are summarized in it, and it is swapped in whole.

Redis failures never reach a request. A `Breaker` stops calls after repeated failures and probes
again with jittered backoff. Writes are at most once: a batch whose write failed or timed out is
dropped and counted (it may have been applied), while batches produced while the breaker is open
are kept, aggregated (so bounded by models × versions × window buckets), and sent after a
successful probe; buckets that leave the window meanwhile are dropped and counted. State changes
are logged once each, not per request or per retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gateway.config.schema import Store
from gateway.errors import StoreError
from gateway.exchange import VERSION_FAILURES, Attempt, Exchange
from gateway.infra.breaker import Breaker
from gateway.infra.clock import SharedClock
from gateway.livestats.base import (
    ANALYSIS_TAG,
    KEY_SERIES,
    REQUESTS,
    RETRY_TAG,
    SHADOW_TAG,
    Batch,
    BucketKey,
    Fetched,
    Fields,
    MetricsStore,
    add_attempt,
    add_request,
    add_session,
    attempts_in,
    bucket_start,
    key_usage,
    merge_batch,
    window_starts,
)
from gateway.livestats.memory import MemoryStore
from gateway.livestats.window import BucketStats, Snapshot

log = logging.getLogger("gateway.store")
ANONYMOUS = "anonymous"  # requests no configured key made (open gateway, failed authentication)
SeriesSource = Callable[[], Sequence[tuple[str, str]]]  # the configured (model, version) pairs


class StoreSync:
    def __init__(
        self,
        settings: Store,
        local: MemoryStore,
        shared: MetricsStore | None,
        clock: SharedClock,
        breaker: Breaker,
        series: SeriesSource,
    ) -> None:
        self.settings = settings
        self.local = local
        self.shared = shared
        self.clock = clock
        self.breaker = breaker
        self._series = series
        self._slow_ms = tuple(settings.slow_ms)
        self._batch: Batch = {}  # counted as requests end, until the next flush
        self._buffered = 0  # requests in `_batch`
        self._pending: Batch = {}
        self.dropped = {"buffer_full": 0, "flush_failed": 0, "expired": 0}
        self.errors = {"flush": 0, "refresh": 0, "probe": 0}
        self.shared_up = shared is None
        self.shared_at: float | None = None  # monotonic time of the last good shared read
        self._down_since = clock.monotonic()
        self.snapshot = Snapshot(
            clock.now(), clock.monotonic(), self.source, settings.bucket_s, settings.window_s
        )

    @property
    def source(self) -> str:
        if self.shared is None:
            return "memory"
        return "redis" if self.shared_up else "local"

    def record_exchange(self, ex: Exchange) -> None:
        """Count a finished request's attempts. Of a canary-split request only the first attempt,
        on the version routing assigned, is also counted as that arm's evidence (`#canary`);
        its other attempts (retries, fallbacks, or a first attempt health moved elsewhere) are
        counted under `#retry` instead. Pinned and rule-routed requests are never evidence."""
        self._count_key(ex)
        if ex.model is None or not ex.attempts:
            return
        if ex.routing_reason != "canary":
            self.record(ex.model, ex.attempts)
            return
        first = ex.attempts[0]
        full = self._buffered >= self.settings.buffer_size  # then record() drops it all
        if len(ex.attempts) == 1 and first.version == ex.assigned:
            self.record(ex.model, ex.attempts, ANALYSIS_TAG)  # the common case: one attempt
        elif first.version == ex.assigned:
            self.record(ex.model, ex.attempts[:1], ANALYSIS_TAG)
            self.record(ex.model, ex.attempts[1:], RETRY_TAG, count=False)
        else:
            self.record(ex.model, ex.attempts, RETRY_TAG)
            return
        if ex.session is not None and not full:  # a sticky split: the unit is the session
            start = bucket_start(self.clock.now(), self.settings.bucket_s)
            fields = _bucket(self._batch, (ex.model, first.version + ANALYSIS_TAG, start))
            add_session(fields, ex.session, first.outcome in VERSION_FAILURES)

    def _count_key(self, ex: Exchange) -> None:
        """Every request is also counted for its client key (`#key` series; unauthenticated as
        `anonymous`)."""
        start = bucket_start(self.clock.now(), self.settings.bucket_s)
        fields = _bucket(self._batch, (KEY_SERIES, ex.client or ANONYMOUS, start))
        add_request(fields, ex.outcome, ex.prompt_tokens, ex.completion_tokens)

    async def key_usage(self, ids: Sequence[str]) -> tuple[str, dict[str, dict[str, Any]]]:
        """Requests, outcomes and tokens per client key id over the live window, summed over
        every replica when the shared store answers (else this process's own counts), and which
        source answered (`redis`, or `local`/`memory`)."""
        series = [(KEY_SERIES, key) for key in (*ids, ANONYMOUS)]
        starts = window_starts(self.clock.now(), self.settings.bucket_s, self.settings.window_s)
        if self.shared is not None and await self._allowed():
            try:
                return "redis", key_usage(await self.shared.fetch(series, starts))
            except StoreError as err:
                self._failed("refresh", err)
        return self.source, key_usage(self.local.fetch_now(series, starts))

    def record(
        self, model: str, attempts: Sequence[Attempt], tag: str = "", count: bool = True
    ) -> None:
        """Count one request's attempts into the batch the next flush sends (the request path's
        only call; never blocks; nothing of the request is kept).

        With a `tag` (e.g. `#canary`, `#shadow`) each attempt is also counted under the series
        `<version><tag>`, so analysis or shadow traffic has counters of its own. `count=False`:
        more attempts of a request already counted against the buffer."""
        if self._buffered >= self.settings.buffer_size:
            self.dropped["buffer_full"] += len(attempts)
            return
        self._buffered += count
        start = bucket_start(self.clock.now(), self.settings.bucket_s)
        batch, slow_ms = self._batch, self._slow_ms
        for attempt in attempts:
            if tag != SHADOW_TAG:  # shadow copies count only under their own series
                add_attempt(_bucket(batch, (model, attempt.version, start)), attempt, slow_ms)
            if tag:
                add_attempt(_bucket(batch, (model, attempt.version + tag, start)), attempt, slow_ms)

    def snapshot_age(self) -> float:
        """Seconds since the view routing reads was last refreshed from the shared store."""
        last = self.snapshot.taken if self.shared is None else self.shared_at
        return self.clock.monotonic() - (self._down_since if last is None else last)

    async def start(self) -> None:
        """Check the shared store once (bounded by its timeout) and say how it is."""
        if self.shared is None:
            return
        try:
            await self.shared.ping()
        except StoreError as err:
            self.breaker.trip()
            log.warning(
                "store: redis unreachable at startup (%s); serving from local state and "
                "reconnecting in the background",
                err.message,
            )
            return
        self._ok()

    async def run(self) -> None:
        """The flush and refresh loops, until cancelled."""
        await asyncio.gather(
            self._every(self.settings.flush_interval_s, self.flush),
            self._every(self.settings.refresh_interval_s, self.refresh),
        )

    async def stop(self) -> None:
        """A last flush (bounded by the store timeout), then close the shared client."""
        await self.flush()
        if self.shared is not None:
            await self.shared.aclose()

    async def flush(self) -> None:
        batch = self._drain()
        self.local.add_now(batch)
        if self.shared is None:
            return
        merge_batch(self._pending, batch)
        self._expire_pending()
        if not self._pending or not await self._allowed():
            return
        pending, self._pending = self._pending, {}
        try:
            await self.shared.add(pending)
        except StoreError as err:
            self.dropped["flush_failed"] += attempts_in(pending)
            self._failed("flush", err)
            return
        self._ok()

    async def refresh(self) -> None:
        series = list(self._series())
        fetched = None
        if self.shared is not None and await self._allowed():
            fetched = await self._fetch_shared(series)
        if fetched is None:
            now = self.clock.now()
            starts = window_starts(now, self.settings.bucket_s, self.settings.window_s)
            fetched = self.local.fetch_now(series, starts)
        self.snapshot = self._build(series, fetched)

    async def _fetch_shared(self, series: list[tuple[str, str]]) -> Fetched | None:
        assert self.shared is not None
        sent = self.clock.monotonic()
        starts = window_starts(self.clock.now(), self.settings.bucket_s, self.settings.window_s)
        try:
            fetched = await self.shared.fetch(series, starts)
        except StoreError as err:
            self._failed("refresh", err)
            return None
        if fetched.server_time is not None:
            self.clock.sync(fetched.server_time, sent, self.clock.monotonic())
        self.shared_at = self.clock.monotonic()
        self._ok()
        return fetched

    def _build(self, series: list[tuple[str, str]], fetched: Fetched) -> Snapshot:
        grouped: dict[tuple[str, str], list[BucketStats]] = {pair: [] for pair in series}
        for (model, version, start), fields in fetched.buckets.items():
            found = grouped.get((model, version))
            if found is not None:
                found.append(BucketStats.parse(start, fields))
        by_model: dict[str, dict[str, tuple[BucketStats, ...]]] = {}
        for (model, version), found in grouped.items():
            ordered = tuple(sorted(found, key=lambda b: b.start))
            by_model.setdefault(model, {})[version] = ordered
        s = self.settings
        snapshot = Snapshot(
            self.clock.now(), self.clock.monotonic(), self.source, s.bucket_s, s.window_s, by_model
        )
        snapshot.summarize_all()  # here, once per refresh, not in every reader (e.g. a scrape)
        return snapshot

    def _drain(self) -> Batch:
        batch, self._batch, self._buffered = self._batch, {}, 0
        return batch

    def _expire_pending(self) -> None:
        """Drop held-back buckets that have left the window (bounds memory during an outage)."""
        oldest = self.clock.now() - self.settings.window_s
        for key in [k for k in self._pending if k[2] + self.settings.bucket_s <= oldest]:
            self.dropped["expired"] += self._pending.pop(key).get(REQUESTS, 0)

    async def _allowed(self) -> bool:
        """May the shared store be called now? When the breaker is due, probe it first."""
        assert self.shared is not None
        if self.breaker.closed:
            return True
        if not self.breaker.ready():
            return False
        try:
            await self.shared.ping()
        except StoreError as err:
            self._failed("probe", err)
            return False
        self._ok()
        return True

    def _ok(self) -> None:
        self.breaker.success()
        if not self.shared_up:
            self.shared_up = True
            log.info(
                "store: redis reachable; sharing state (local-only for %.1fs)",
                self.clock.monotonic() - self._down_since,
            )

    def _failed(self, op: str, err: StoreError) -> None:
        self.errors[op] += 1
        self.breaker.failure()
        if self.shared_up and not self.breaker.closed:
            self.shared_up = False
            self._down_since = self.clock.monotonic()
            log.warning(
                "store: redis unavailable (%s: %s); serving from local state, reconnecting "
                "with backoff",
                op,
                err.message,
            )

    async def _every(self, interval: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            started = self.clock.monotonic()
            try:
                await step()
            except Exception:
                log.exception("store: background %s failed", getattr(step, "__name__", "step"))
            elapsed = self.clock.monotonic() - started
            await asyncio.sleep(max(interval - elapsed, 0.0))


def _bucket(batch: Batch, key: BucketKey) -> Fields:
    """The counters of `key` in `batch`, created empty the first time."""
    fields = batch.get(key)
    if fields is None:
        fields = batch[key] = {}
    return fields
