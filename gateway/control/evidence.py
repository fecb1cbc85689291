"""The canary's evidence: per-bucket counts per arm, read from the live-metrics snapshot.

Analysis traffic (requests the canary split routed, routing reason `canary`; pinned and
rule-routed requests excluded) is recorded a second time under the series `<version>#canary`
(`ANALYSIS_TAG`), so each arm's counts hold only the analysis. A canary bucket is
`analysis.bucket_s` rounded up to a multiple of `store.bucket_s`; index k covers
[k·B, (k+1)·B) in shared-clock seconds and is complete once the snapshot was read at least
`settle_s` after its end (every replica has flushed it by then).

Per arm: `requests` = successes + version failures (client errors judge nothing), `failures` =
`exchange.VERSION_FAILURES`, `latency_n` = successes with a latency (or, with `metric: ttft`,
TTFT) observation, `slow` = those above the threshold: the baseline's `slow_percentile` over the
earlier buckets in the window (rounded up to its histogram bucket; the same threshold for both
arms). With `metric: both`, `ttft_n` / `ttft_slow` are the same for TTFT (streamed requests
only), with its own threshold. Without earlier baseline observations a bucket carries no
latency evidence.

Sticky canaries (the store's `u:` / `x:` session fields on the analysis series) also get
`sessions` = sessions first seen in the bucket (in neither arm's earlier buckets of the window)
and `failed_sessions` = those of them with a failure in it; keyless requests count one session
each. `Evidence.sessions` is then set and the judge counts sessions, each once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from gateway.canary.settings import CanarySettings
from gateway.canary.state import ArmCounts, Evidence
from gateway.livestats.base import ANALYSIS_TAG
from gateway.livestats.histogram import Histogram, bucket_of
from gateway.livestats.window import BucketStats, Snapshot


def analysis_series(version: str) -> str:
    return version + ANALYSIS_TAG


def canary_bucket_s(analysis_bucket_s: int, store_bucket_s: int) -> int:
    """The analysis bucket, a whole number of store buckets."""
    return -(-analysis_bucket_s // store_bucket_s) * store_bucket_s


def last_complete(now: float, bucket_s: int, settle_s: float) -> int:
    """The index of the newest bucket that is complete at `now`."""
    return int((now - settle_s) // bucket_s) - 1


class SnapshotEvidence:
    """Evidence from a `StoreSync`'s current snapshot (what the controller reads)."""

    def __init__(
        self, snapshot: Callable[[], Snapshot], store_bucket_s: int, settle_s: float
    ) -> None:
        self._snapshot = snapshot
        self.store_bucket_s = store_bucket_s
        self.settle_s = settle_s

    def bucket_s(self, analysis_bucket_s: int) -> int:
        return canary_bucket_s(analysis_bucket_s, self.store_bucket_s)

    def buckets(
        self, model: str, settings: CanarySettings, bucket_s: int, after: int
    ) -> list[Evidence]:
        snap = self._snapshot()
        done = last_complete(snap.now, bucket_s, self.settle_s)
        cand = _grouped(snap.buckets(model, analysis_series(settings.candidate)), bucket_s)
        base = _grouped(snap.buckets(model, analysis_series(settings.baseline)), bucket_s)
        metrics = _metrics(settings)
        indexes = sorted(set(cand) | set(base))
        sessions = _sessions(cand, base, indexes)
        out = []
        for index in indexes:
            if after < index <= done:
                limits = [_threshold(settings, base, index, m) for m in metrics]
                c = _counts(cand.get(index, ()), metrics, limits)
                b = _counts(base.get(index, ()), metrics, limits)
                if sessions is not None:
                    (c_new, c_failed), (b_new, b_failed) = sessions[index]
                    c = replace(c, sessions=c_new, failed_sessions=c_failed)
                    b = replace(b, sessions=b_new, failed_sessions=b_failed)
                ev = Evidence(index, float(index * bucket_s), c, b, sessions=sessions is not None)
                out.append(ev)
        return out

    def done(self, bucket_s: int) -> int:
        """The newest complete bucket index now (a resumed step starts after it)."""
        return last_complete(self._snapshot().now, bucket_s, self.settle_s)


def _grouped(buckets: Sequence[BucketStats], bucket_s: int) -> dict[int, list[BucketStats]]:
    out: dict[int, list[BucketStats]] = {}
    for b in buckets:
        out.setdefault(b.start // bucket_s, []).append(b)
    return out


Pair = tuple[int, int]


def _sessions(
    cand: dict[int, list[BucketStats]], base: dict[int, list[BucketStats]], indexes: list[int]
) -> dict[int, tuple[Pair, Pair]] | None:
    """Per bucket index and arm: (sessions first seen there, those of them that failed there);
    None when the series carry no session fields (not a sticky canary)."""
    everything = [b for arm in (cand, base) for bs in arm.values() for b in bs]
    if not any(b.sessions for b in everything):
        return None
    seen: set[str] = set()
    out: dict[int, tuple[Pair, Pair]] = {}
    for index in indexes:
        arms = [_arm_sessions(arm.get(index, ())) for arm in (cand, base)]
        counts = []
        for failed_by_id, keyless in arms:
            new = [sid for sid in failed_by_id if sid not in seen]
            counts.append((len(new) + keyless[0], sum(failed_by_id[s] for s in new) + keyless[1]))
        for failed_by_id, _ in arms:
            seen.update(failed_by_id)
        out[index] = (counts[0], counts[1])
    return out


def _arm_sessions(buckets: Iterable[BucketStats]) -> tuple[dict[str, bool], Pair]:
    """One arm's sessions in one index: id → failed there; and keyless (requests, failures)."""
    failed: dict[str, bool] = {}
    keyless = [0, 0]
    for b in buckets:
        for sid, count in b.sessions.items():
            if sid == "-":
                keyless[0] += count
                keyless[1] += b.failed_sessions.get("-", 0)
            else:
                failed[sid] = failed.get(sid, False) or sid in b.failed_sessions
    return failed, (keyless[0], keyless[1])


def _metrics(settings: CanarySettings) -> tuple[str, ...]:
    """The histograms the tail tests read, in ArmCounts order (latency_n/slow, ttft_n/ttft_slow)."""
    metric = settings.analysis.metric
    return {"both": ("latency", "ttft"), "latency": ("latency",), "ttft": ("ttft",)}.get(metric, ())


def _hist(bucket: BucketStats, metric: str) -> Histogram:
    return bucket.ttft if metric == "ttft" else bucket.latency


def _threshold(
    settings: CanarySettings, base: dict[int, list[BucketStats]], index: int, metric: str
) -> int | None:
    """The histogram bucket index at the baseline's slow percentile before bucket `index`."""
    merged = Histogram()
    for earlier, buckets in base.items():
        if earlier < index:
            for b in buckets:
                merged.merge(_hist(b, metric))
    value = merged.quantile(settings.analysis.slow_percentile / 100.0)
    return None if value is None else bucket_of(value)


def _counts(
    buckets: Sequence[BucketStats], metrics: Sequence[str], limits: Sequence[int | None]
) -> ArmCounts:
    requests = failures = 0
    tails = [0, 0, 0, 0]  # latency_n, slow, ttft_n, ttft_slow
    for b in buckets:
        failures += b.failures
        requests += b.successes + b.failures
        for slot, (metric, limit) in enumerate(zip(metrics, limits, strict=True)):
            if limit is not None:
                hist = _hist(b, metric)
                tails[2 * slot] += int(hist.total)
                tails[2 * slot + 1] += int(sum(c for i, c in hist.counts.items() if i > limit))
    return ArmCounts(requests, failures, *tails)
