"""StoreSync with a fake shared store and a fake clock: buffering, fallback, breaker, recovery."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from random import Random

import pytest

from gateway.config.schema import Store
from gateway.errors import StoreTimeout, StoreUnavailable
from gateway.exchange import (
    CLIENT_CANCEL,
    CLIENT_ERROR,
    SUCCESS,
    UPSTREAM_ERROR,
    Attempt,
    Exchange,
)
from gateway.infra.breaker import Breaker
from gateway.infra.clock import SharedClock
from gateway.livestats import StoreSync
from gateway.livestats.base import BucketKey, Fetched
from gateway.livestats.memory import MemoryStore
from tests.support import ManualClock

SERIES = [("chat", "v1"), ("chat", "v2")]


class FakeShared:
    """A shared store whose health the test sets: ok, refused or timing out."""

    name = "redis"

    def __init__(self, clock: ManualClock) -> None:
        self.data = MemoryStore(3600, lambda: 0.0)
        self.mode = "ok"
        self.calls = 0
        self.clock = clock

    def _check(self) -> None:
        self.calls += 1
        if self.mode == "refuse":
            raise StoreUnavailable("refused")
        if self.mode == "timeout":
            raise StoreTimeout("timed out")

    async def add(self, batch: Mapping[BucketKey, Mapping[str, int]]) -> None:
        self._check()
        self.data.add_now(batch)

    async def fetch(self, series: Sequence[tuple[str, str]], starts: Sequence[int]) -> Fetched:
        self._check()
        return Fetched(self.data.fetch_now(series, starts).buckets, 903.0 + self.clock.now)

    async def ping(self) -> None:
        self._check()

    async def aclose(self) -> None:
        pass


def settings(**changes: object) -> Store:
    return Store.model_validate({"backend": "redis", "bucket_s": 5, "window_s": 30, **changes})


def make(
    shared: bool = True, **changes: object
) -> tuple[StoreSync, FakeShared | None, ManualClock]:
    clock = ManualClock(100.0)
    shared_clock = SharedClock(clock, lambda: 1000.0)
    fake = FakeShared(clock) if shared else None
    cfg = settings(**changes)
    breaker = Breaker(cfg.breaker_failures, 0.1, cfg.backoff_max_s, Random(1), clock)
    local = MemoryStore(cfg.window_s + 10, shared_clock.now)
    return StoreSync(cfg, local, fake, shared_clock, breaker, lambda: SERIES), fake, clock


def ok(version: str = "v1", duration: float = 0.05, outcome: str = SUCCESS) -> list[Attempt]:
    return [
        Attempt(
            version,
            0.0,
            False,
            outcome,
            200,
            ttft=duration / 2,
            duration=duration,
            prompt_tokens=3,
            completion_tokens=5,
        )
    ]


async def test_flush_and_refresh_share_counts_and_follow_the_store_clock() -> None:
    sync, _fake, clock = make()
    await sync.start()
    for _ in range(10):
        sync.record("chat", ok())
    sync.record("chat", ok("v2", outcome=UPSTREAM_ERROR))
    await sync.flush()
    await sync.refresh()
    assert sync.snapshot.source == "redis" and sync.shared_up
    stats = sync.snapshot.window("chat", "v1")
    assert stats.samples == 10 and stats.prompt_tokens == 30 and stats.completion_tokens == 50
    assert sync.snapshot.window("chat", "v2").error_rate() == 1.0
    assert abs(sync.clock.now() - (903.0 + clock.now)) < 0.01  # adopted the store's clock (+3 s)


async def test_client_outcomes_are_counted_apart_and_judge_nothing() -> None:
    sync, _, _ = make(shared=False)
    for outcome in (CLIENT_ERROR, CLIENT_CANCEL, SUCCESS):
        sync.record("chat", ok(outcome=outcome))
    await sync.flush()
    await sync.refresh()
    stats = sync.snapshot.window("chat", "v1")
    assert stats.requests == 3 and stats.samples == 1 and stats.error_rate() == 0.0
    assert stats.latency.total == 1  # only the success has a latency
    assert sync.snapshot.source == "memory"


async def test_buffer_is_bounded_and_overflow_is_counted() -> None:
    sync, _, _ = make(buffer_size=100)
    for _ in range(150):
        sync.record("chat", ok() + ok("v2"))
    assert sync.dropped["buffer_full"] == 100  # 50 requests × 2 attempts
    await sync.flush()
    assert sync._buffered == 0 and not sync._batch


async def test_failed_writes_are_dropped_and_the_breaker_stops_calls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sync, fake, _clock = make(breaker_failures=2)
    assert fake is not None
    await sync.start()
    fake.mode = "timeout"
    caplog.set_level(logging.INFO, "gateway.store")
    for _ in range(2):
        sync.record("chat", ok())
        await sync.flush()
    assert sync.dropped["flush_failed"] == 2 and not sync.shared_up
    calls = fake.calls
    for _ in range(20):  # breaker open: no calls, data held back, served locally
        sync.record("chat", ok())
        await sync.flush()
        await sync.refresh()
    assert fake.calls == calls
    assert sync.snapshot.source == "local" and sync.snapshot.window("chat", "v1").samples == 22
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one line per state change, not per failure


async def test_held_back_data_reaches_the_store_after_recovery() -> None:
    sync, fake, clock = make(breaker_failures=1)
    assert fake is not None
    await sync.start()
    fake.mode = "refuse"
    sync.record("chat", ok())
    await sync.flush()  # fails: dropped (at most once)
    for _ in range(5):
        sync.record("chat", ok())
        await sync.flush()  # breaker open: held back
    fake.mode = "ok"
    clock.now += 0.2  # past the first (jittered 0.05–0.15 s) backoff
    await sync.flush()
    await sync.refresh()
    assert sync.shared_up and sync.snapshot.source == "redis"
    assert sync.snapshot.window("chat", "v1").samples == 5
    assert sync.dropped["flush_failed"] == 1


async def test_held_back_buckets_expire_with_the_window() -> None:
    sync, fake, clock = make(breaker_failures=1, window_s=30)
    assert fake is not None
    fake.mode = "refuse"
    await sync.start()  # starts down: the breaker is open at once
    sync.record("chat", ok())
    await sync.flush()
    clock.now += 40  # the bucket leaves the 30 s window while Redis is still away
    fake.mode = "refuse"
    await sync.flush()
    assert sync.dropped["expired"] == 1 and not sync._pending


async def test_reconnect_backoff_grows_with_jitter_and_caps() -> None:
    clock = ManualClock(100.0)
    delays = []
    for seed in range(2):
        breaker = Breaker(1, 0.1, 2.0, Random(seed), clock)
        row = []
        for _ in range(8):
            breaker.failure()
            row.append(breaker.retry_at - clock.now)
        delays.append(row)
    for row in delays:
        for k, delay in enumerate(row):
            nominal = min(2.0, 0.1 * 2**k)
            assert 0.5 * nominal <= delay < 1.5 * nominal
    assert delays[0] != delays[1]  # two replicas do not retry in step


async def test_starting_with_redis_down_serves_locally_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sync, fake, clock = make()
    assert fake is not None
    fake.mode = "refuse"
    caplog.set_level(logging.INFO, "gateway.store")
    await sync.start()
    assert "unreachable at startup" in caplog.text and not sync.shared_up
    sync.record("chat", ok())
    await sync.flush()
    await sync.refresh()
    assert sync.snapshot.source == "local" and sync.snapshot.window("chat", "v1").samples == 1
    fake.mode = "ok"
    clock.now += 1.0
    await sync.refresh()
    assert sync.shared_up and "reachable" in caplog.records[-1].getMessage()


async def test_only_the_assigned_first_attempt_is_canary_evidence() -> None:
    """Regression (issue 13): a baseline failure retried on the candidate counted as candidate
    evidence. Now retries and reassigned first attempts go to `#retry`, never `#canary`."""
    tagged = [(m, v + t) for m, v in SERIES for t in ("#canary", "#retry")]
    sync, _, _ = make(shared=False)
    sync._series = lambda: [*SERIES, *tagged]

    def exchange(assigned: str, *attempts: tuple[str, str]) -> Exchange:
        ex = Exchange("r", "/v1/chat/completions", 0.0, "chat", routing_reason="canary")
        ex.assigned = assigned
        ex.attempts = [ok(v, outcome=o)[0] for v, o in attempts]
        return ex

    sync.record_exchange(exchange("v1", ("v1", SUCCESS)))
    sync.record_exchange(exchange("v1", ("v1", UPSTREAM_ERROR), ("v2", SUCCESS)))  # retried
    sync.record_exchange(exchange("v2", ("v1", SUCCESS)))  # health moved it off the candidate
    await sync.flush()
    await sync.refresh()
    snap = sync.snapshot
    base, cand = snap.window("chat", "v1#canary"), snap.window("chat", "v2#canary")
    assert (base.requests, base.error_rate(), cand.requests) == (2, 0.5, 0)
    assert snap.window("chat", "v2#retry").requests == 1
    assert snap.window("chat", "v1#retry").requests == 1
    assert snap.window("chat", "v1").requests == 3 and snap.window("chat", "v2").requests == 1


async def test_sticky_canary_evidence_records_its_sessions() -> None:
    """Issue 13: with a sticky key the canary's unit is the session; the analysis series carry
    each session's requests and failures (keyless requests under `-`), the plain one does not."""
    tagged = [(m, v + "#canary") for m, v in SERIES]
    sync, _, _ = make(shared=False)
    sync._series = lambda: [*SERIES, *tagged]

    def exchange(session: str | None, outcome: str) -> Exchange:
        ex = Exchange("r", "/v1/chat/completions", 0.0, "chat", routing_reason="canary")
        ex.assigned, ex.session = "v2", session
        ex.attempts = [ok("v2", outcome=outcome)[0]]
        return ex

    for session, outcome in [("a", SUCCESS), ("a", UPSTREAM_ERROR), ("b", SUCCESS), ("", SUCCESS)]:
        sync.record_exchange(exchange(session, outcome))
    sync.record_exchange(exchange(None, UPSTREAM_ERROR))  # not a sticky split: no session fields
    await sync.flush()
    await sync.refresh()
    (bucket,) = sync.snapshot.buckets("chat", "v2#canary")
    assert bucket.sessions == {"a": 2, "b": 1, "-": 1} and bucket.failed_sessions == {"a": 1}
    assert bucket.requests == 5
    assert all(not b.sessions for b in sync.snapshot.buckets("chat", "v2"))
