"""The controller's evidence code: live-store buckets per arm → the judge's `Evidence`, with the
latency and TTFT tails counted against the baseline's earlier percentile (each its own)."""

from __future__ import annotations

from dataclasses import replace

from gateway.canary.settings import Analysis, CanarySettings
from gateway.control.evidence import SnapshotEvidence
from gateway.livestats.histogram import Histogram
from gateway.livestats.window import BucketStats, Snapshot

FAST = [100.0] * 95  # ms: the baseline's p95 is ~100 ms
LATE = [100.0] * 45 + [900.0] * 5  # 50 streamed requests, 5 of them slow to the first token


def bucket(start: int, latency: list[float], ttft: list[float], failures: int = 0) -> BucketStats:
    outcomes = {"success": len(latency), "upstream_error": failures}
    return BucketStats(
        start,
        requests=len(latency) + failures,
        outcomes=outcomes,
        latency=Histogram.of(latency),
        ttft=Histogram.of(ttft),
    )


def evidence(metric: str) -> list:  # type: ignore[type-arg]
    base = [bucket(0, FAST, FAST), bucket(10, FAST, FAST, failures=2)]
    cand = [bucket(0, FAST, FAST), bucket(10, FAST, LATE, failures=1)]  # TTFT worse only
    snap = Snapshot(
        now=100.0,
        taken=0.0,
        source="memory",
        bucket_s=10,
        window_s=600,
        series={"chat": {"v1#canary": tuple(base), "v2#canary": tuple(cand)}},
    )
    settings = CanarySettings("v1", "v2", analysis=replace(Analysis(), metric=metric))  # type: ignore[arg-type]
    return SnapshotEvidence(lambda: snap, 10, 1.0).buckets("chat", settings, 10, -1)


def test_both_counts_latency_and_ttft_against_their_own_thresholds() -> None:
    first, second = evidence("both")
    assert first.candidate.latency_n == 0  # no earlier baseline bucket: no tail evidence yet
    c, b = second.candidate, second.baseline
    assert (c.requests, c.failures, b.requests, b.failures) == (96, 1, 97, 2)
    assert (c.latency_n, c.slow) == (95, 0)  # latency unchanged
    assert (c.ttft_n, c.ttft_slow) == (50, 5)  # 50 streamed, 5 slow to first token
    assert (b.ttft_n, b.ttft_slow) == (95, 0)


def test_one_metric_fills_the_first_tail_only() -> None:
    _, latency = evidence("latency")
    assert (latency.candidate.latency_n, latency.candidate.ttft_n) == (95, 0)
    _, ttft = evidence("ttft")
    assert (ttft.candidate.latency_n, ttft.candidate.slow, ttft.candidate.ttft_n) == (50, 5, 0)
    _, none = evidence("none")
    assert (none.candidate.latency_n, none.candidate.ttft_n, none.candidate.failures) == (0, 0, 1)


def test_sticky_sessions_count_once_when_first_seen() -> None:
    def sticky(start: int, sessions: dict[str, int], failed: dict[str, int]) -> BucketStats:
        failures = sum(failed.values())
        return replace(
            bucket(start, [100.0] * (sum(sessions.values()) - failures), [], failures),
            sessions=sessions,
            failed_sessions=failed,
        )

    base = [sticky(0, {"a": 5, "b": 1}, {}), sticky(10, {"a": 9, "c": 2, "-": 3}, {"c": 1, "-": 1})]
    cand = [sticky(0, {"d": 4}, {"d": 4}), sticky(10, {"d": 8, "e": 1}, {"d": 8})]
    snap = Snapshot(
        100.0,
        0.0,
        "memory",
        10,
        600,
        {"chat": {"v1#canary": tuple(base), "v2#canary": tuple(cand)}},
    )
    settings = CanarySettings("v1", "v2")
    first, second = SnapshotEvidence(lambda: snap, 10, 1.0).buckets("chat", settings, 10, -1)
    assert first.sessions and second.sessions
    assert (first.candidate.sessions, first.candidate.failed_sessions) == (1, 1)  # d
    assert (first.baseline.sessions, first.baseline.failed_sessions) == (2, 0)  # a, b
    # d and a were seen before: only e (candidate) and c plus 3 keyless (baseline) are new
    assert (second.candidate.sessions, second.candidate.failed_sessions) == (1, 0)
    assert (second.baseline.sessions, second.baseline.failed_sessions) == (4, 2)
    assert second.candidate.requests == 9  # requests are still counted for the guardrails


def test_plain_canaries_carry_no_session_counts() -> None:
    first, _ = evidence("both")
    assert not first.sessions and first.candidate.sessions == 0
