"""The per-version gauges read the snapshot's precomputed percentiles under the right labels."""

from __future__ import annotations

import re

from gateway.livestats.histogram import Histogram
from gateway.livestats.window import BucketStats, summarize
from gateway.observability.exposition import number
from gateway.observability.gauges import VersionPrefixes, version_lines


def test_quantile_labels_carry_the_percentile_they_name() -> None:
    latency = Histogram.of([float(ms) for ms in range(1, 400)])
    ttft = Histogram.of([float(ms) / 3 for ms in range(1, 400)])
    bucket = BucketStats(1000, 399, {"success": 399}, latency, ttft)
    stats = summarize([bucket], 5.0)
    families: tuple[list[str], ...] = ([], [], [], [], [], [])
    version_lines(stats, VersionPrefixes.of("chat", "v1"), families)
    latency_lines, ttft_lines = families[2], families[3]
    assert len(latency_lines) == 3 and len(ttft_lines) == 2
    for lines, hist in ((latency_lines, latency), (ttft_lines, ttft)):
        for line in lines:
            found = re.search(r'q="([0-9.]+)"', line)
            assert found is not None
            value = hist.quantile(float(found.group(1)))
            assert value is not None and line.endswith(f" {number(value / 1000)}\n")
