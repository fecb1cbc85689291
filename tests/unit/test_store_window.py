"""A snapshot's window numbers are computed once, when it is published, and equal a fresh sum.

The reference here never goes through `summarize`: it adds the buckets' raw fields first and
parses the sum (parsing commutes with adding counters), so a wrong cached or merged result, a
cache kept across snapshots, or a window that moved with the reader's clock all show.
"""

from __future__ import annotations

from random import Random

import pytest

from gateway.config.schema import Store
from gateway.exchange import OUTCOMES, SUCCESS, TIMEOUT, Attempt
from gateway.infra.breaker import Breaker
from gateway.infra.clock import SharedClock
from gateway.livestats import Snapshot, StoreSync, WindowStats
from gateway.livestats import window as window_module
from gateway.livestats.base import Batch, Fields, add_attempt, merge_batch
from gateway.livestats.histogram import Histogram
from gateway.livestats.memory import MemoryStore
from gateway.livestats.window import WINDOW_QS, BucketStats, summarize
from tests.support import ManualClock

SERIES = [("chat", "v1"), ("chat", "v2"), ("chat", "v1#canary"), ("embed", "v1")]
BUCKET_S, WINDOW_S = 5, 30


def attempts(rng: Random, version: str, n: int) -> list[Attempt]:
    out = []
    for _ in range(n):
        outcome = rng.choice([*OUTCOMES, SUCCESS, SUCCESS, SUCCESS])
        duration = rng.lognormvariate(-1.5, 0.8)
        ttft = duration * rng.uniform(0.05, 0.9)
        out.append(Attempt(version, 0.0, False, outcome, 200, ttft=ttft, duration=duration))
    return out


def fields_of(rng: Random, version: str, n: int) -> Fields:
    fields: Fields = {}
    for attempt in attempts(rng, version, n):
        add_attempt(fields, attempt, (500, 1000))
    return fields


def reference(buckets: list[Fields], span_s: float) -> dict[str, object]:
    """The window's numbers from the sum of the raw fields (no `summarize`, no `merged`)."""
    total: Batch = {}
    for fields in buckets:
        merge_batch(total, {("m", "v", 0): fields})
    parsed = BucketStats.parse(0, total.get(("m", "v", 0), {}))
    return {
        "span_s": max(span_s, 1.0),
        "requests": parsed.requests,
        "outcomes": dict(parsed.outcomes),
        "latency": dict(sorted(parsed.latency.counts.items())),
        "ttft": dict(sorted(parsed.ttft.counts.items())),
        "slow": dict(parsed.slow),
        "latency_qs": tuple(parsed.latency.quantile(q) for q in WINDOW_QS),
        "ttft_qs": tuple(parsed.ttft.quantile(q) for q in WINDOW_QS),
    }


def numbers(stats: WindowStats) -> dict[str, object]:
    return {
        "span_s": stats.span_s,
        "requests": stats.requests,
        "outcomes": dict(stats.outcomes),
        "latency": dict(sorted(stats.latency.counts.items())),
        "ttft": dict(sorted(stats.ttft.counts.items())),
        "slow": dict(stats.slow),
        "latency_qs": stats.latency_qs,
        "ttft_qs": stats.ttft_qs,
    }


def snapshot_of(raw: dict[tuple[str, str], dict[int, Fields]], now: float) -> Snapshot:
    series: dict[str, dict[str, tuple[BucketStats, ...]]] = {}
    for (model, version), by_start in raw.items():
        parsed = tuple(BucketStats.parse(s, f) for s, f in sorted(by_start.items()))
        series.setdefault(model, {})[version] = parsed
    return Snapshot(now, 0.0, "memory", BUCKET_S, WINDOW_S, series)


def raw_series(seed: int) -> dict[tuple[str, str], dict[int, Fields]]:
    rng = Random(seed)
    return {
        pair: {
            start: fields_of(rng, pair[1], rng.randint(0, 40))
            for start in range(1000, 1030, BUCKET_S)
            if rng.random() < 0.8
        }
        for pair in SERIES
    }


def span(raw: dict[tuple[str, str], dict[int, Fields]], model: str, now: float) -> float:
    starts = [s for (m, _), by_start in raw.items() if m == model for s in by_start]
    return now - max(min(starts, default=now), now - WINDOW_S)


@pytest.mark.parametrize("seed", range(20))
def test_window_equals_a_fresh_sum_of_the_buckets(seed: int) -> None:
    raw = raw_series(seed)
    now = 1031.7
    snap = snapshot_of(raw, now)
    snap.summarize_all()
    for model, version in SERIES:
        stats = snap.window(model, version)
        expected = reference(list(raw[(model, version)].values()), span(raw, model, now))
        assert numbers(stats) == expected, (model, version)
        assert stats.latency_qs == tuple(stats.latency.quantiles(WINDOW_QS))
        lazy = snapshot_of(raw, now).window(model, version)  # computed on first read instead
        assert numbers(lazy) == expected


def test_window_is_computed_once_and_shared_by_every_reader() -> None:
    snap = snapshot_of(raw_series(1), 1031.0)
    first = snap.window("chat", "v1")
    assert snap.window("chat", "v1") is first
    assert snap.window("chat", "v2") is not first
    assert snap.window("nope", "v9") is snap.window("nope", "v9")
    assert snap.window("nope", "v9").requests == 0 and snap.window("nope", "v9").latency_qs == (
        None,
        None,
        None,
    )


def make_sync() -> tuple[StoreSync, ManualClock]:
    clock = ManualClock()
    shared_clock = SharedClock(clock, lambda: 0.0)
    cfg = Store.model_validate({"backend": "memory", "bucket_s": BUCKET_S, "window_s": WINDOW_S})
    breaker = Breaker(cfg.breaker_failures, 0.1, cfg.backoff_max_s, Random(1), clock)
    local = MemoryStore(WINDOW_S + 10, shared_clock.now)
    return StoreSync(cfg, local, None, shared_clock, breaker, lambda: SERIES), clock


def success(ms: float) -> list[Attempt]:
    return [Attempt("v1", 0.0, False, SUCCESS, 200, ttft=ms / 2000, duration=ms / 1000)]


async def test_published_snapshots_are_summarized_before_any_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sync, _ = make_sync()
    sync.record("chat", success(80.0))
    await sync.flush()
    await sync.refresh()

    def no_summaries(*args: object) -> WindowStats:
        raise AssertionError("a reader summarized a published snapshot")

    monkeypatch.setattr(window_module, "summarize", no_summaries)
    for model, version in SERIES:
        sync.snapshot.window(model, version)  # every series came summarized
    assert sync.snapshot.window("chat", "v1").samples == 1


async def test_a_new_snapshot_or_bucket_gets_new_numbers() -> None:
    sync, clock = make_sync()
    sync.record("chat", success(80.0))
    await sync.flush()
    await sync.refresh()
    old = sync.snapshot
    before = numbers(old.window("chat", "v1"))

    clock.now += BUCKET_S  # the next bucket: slower successes and a timeout
    for _ in range(3):
        sync.record("chat", success(900.0))
    sync.record("chat", [Attempt("v1", 0.0, False, TIMEOUT, 0, duration=2.0)])
    await sync.flush()
    assert numbers(old.window("chat", "v1")) == before  # a published snapshot never changes
    await sync.refresh()
    stats = sync.snapshot.window("chat", "v1")
    assert sync.snapshot is not old and stats is not old.window("chat", "v1")
    assert (stats.samples, stats.failures, old.window("chat", "v1").samples) == (5, 1, 1)
    assert stats.span_s == pytest.approx(BUCKET_S)  # and the window moved with the new `now`
    assert stats.latency_qs[2] is not None and stats.latency_qs[2] > 800.0
    assert numbers(old.window("chat", "v1")) == before


async def test_the_window_is_as_of_the_snapshot_not_the_reader_clock() -> None:
    """Why one result per snapshot is exact: reading later (even a window later, before the
    next refresh) gives what a fresh computation on that snapshot gives."""
    sync, clock = make_sync()
    sync.record("chat", success(80.0))
    await sync.flush()
    await sync.refresh()
    snap = sync.snapshot
    clock.now += 2 * WINDOW_S
    fresh = Snapshot(snap.now, snap.taken, snap.source, snap.bucket_s, snap.window_s, snap.series)
    assert numbers(snap.window("chat", "v1")) == numbers(fresh.window("chat", "v1"))
    assert snap.window("chat", "v1").samples == 1


def test_summarize_of_no_buckets_is_empty() -> None:
    stats = summarize((), 0.0)
    assert (stats.requests, stats.span_s, stats.latency_qs) == (0, 1.0, (None, None, None))


def test_parse_reads_every_field_kind_and_skips_the_rest() -> None:
    fields = {
        "n": 9,
        "o:success": 5,
        "o:timeout": 2,
        "l:7": 2,
        "l:07": 1,  # the same bucket spelled differently: added up
        "l:x": 4,
        "t:3": 3,
        "s:500": 1,
        "s:": 6,
        "o:": 6,
        "tp": 11,
        "tc": 12,
        "zz:1": 5,
        "lat:1": 5,
    }
    b = BucketStats.parse(1000, fields)
    assert (b.start, b.requests, b.prompt_tokens, b.completion_tokens) == (1000, 9, 11, 12)
    assert b.outcomes == {"success": 5, "timeout": 2} and b.slow == {500: 1}
    assert b.latency.counts == {7: 3.0} and b.ttft.counts == {3: 3.0}
    assert all(isinstance(c, float) for c in [*b.latency.counts.values(), *b.ttft.counts.values()])


def test_merged_equals_merging_one_by_one_and_copies_its_inputs() -> None:
    rng = Random(5)
    hists = [
        Histogram({rng.randint(0, 200): rng.randint(1, 9) for _ in range(rng.randint(0, 30))})
        for _ in range(12)
    ]
    one_by_one = Histogram()
    for hist in hists:
        one_by_one.merge(hist)
    merged = Histogram.merged(hists)
    assert list(merged.counts.items()) == list(one_by_one.counts.items())
    assert all(isinstance(c, float) for c in merged.counts.values())
    before = dict(hists[0].counts)
    merged.add(next(iter(before), 0), 100.0)
    assert hists[0].counts == before  # the first input is copied, not adopted
    assert Histogram.merged([]).counts == {}
