"""How long one /metrics scrape takes with 10 models x 5 versions (issue 6: under 5 ms).

Builds the real app for a generated config, records traffic for every version so every series
exists (requests by outcome, histograms, tokens, upstream attempts), feeds the same attempts with
varied latencies into the live store over a full stats window (12 buckets of 5 s on a fake clock,
so the per-version live gauges, quantiles included, are computed from real data), then times the
scrape endpoint's work (`Metrics.scrape`, including the live gauges) in-process.

The per-version window numbers the gauges show are summarized when the store sync publishes a
snapshot (every refresh, ~1 s), not per scrape; the second line times that refresh (store read,
bucket parsing, snapshot build) and, within it, `Snapshot.summarize_all` on its own.

    .venv/bin/python bench/scrape.py [--repeats 100] [--successes 0]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from random import Random

from gateway.app import App, create_app
from gateway.config import parse_config
from gateway.exchange import OUTCOMES, Attempt, Exchange
from gateway.infra.clock import SharedClock
from gateway.livestats.window import Snapshot

MODELS, VERSIONS = 10, 5


def config(models: int, versions: int) -> str:
    lines = ["models:"]
    for m in range(models):
        lines += [f"  m{m}:", "    versions:"]
        lines += [
            f"      v{v}: {{upstream: {{url: 'http://127.0.0.1:9/v1', model: x}}}}"
            for v in range(versions)
        ]
        lines += [
            "    routing:",
            "      weights: {" + ", ".join(f"v{v}: 1" for v in range(versions)) + "}",
        ]
    return "\n".join(lines) + "\n"


def exchange(model: str, version: str, outcome: str, rng: Random) -> Exchange:
    """One request served by `version` in one attempt, with a random TTFT and duration."""
    ttft = rng.uniform(0.02, 2.0)
    duration = ttft + rng.uniform(0.05, 20.0)
    ex = Exchange(
        "r",
        "/v1/chat/completions",
        0.0,
        model=model,
        version=version,
        outcome=outcome,
        ttft=ttft,
        duration=duration,
        prompt_tokens=10,
        completion_tokens=20,
    )
    ex.attempts.append(Attempt(version, 0.0, False, outcome=outcome, ttft=ttft, duration=duration))
    return ex


def traffic(app: App, now: list[float], rng: Random, successes: int = 0) -> None:
    """Every version and outcome, plus `successes` more successful requests per version, in each
    of the stats window's 12 buckets (5 s apart)."""
    metrics, sync = app.current.runtime.metrics, app.parts.sync
    for _ in range(12):
        now[0] += 5.0
        for m in range(MODELS):
            for v in range(VERSIONS):
                for outcome in (*OUTCOMES, *["success"] * successes):
                    ex = exchange(f"m{m}", f"v{v}", outcome, rng)
                    metrics.record(ex)
                    metrics.attempted(f"m{m}", ex.attempts[0])
                    sync.record_exchange(ex)
        asyncio.run(sync.flush())
    asyncio.run(sync.refresh())


def median_ms(step: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def refresh_cost(app: App, repeats: int) -> str:
    """The background refresh's median time, and that of the window summaries inside it."""
    sync = app.parts.sync
    loop = asyncio.new_event_loop()
    refresh = median_ms(lambda: loop.run_until_complete(sync.refresh()), repeats)
    loop.close()
    s = sync.snapshot

    def summaries() -> None:
        Snapshot(s.now, s.taken, s.source, s.bucket_s, s.window_s, s.series).summarize_all()

    return (
        f"per snapshot (refresh, ~1/s, off the scrape): refresh median {refresh:.2f} ms, "
        f"of which window summaries {median_ms(summaries, repeats):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument(
        "--successes",
        type=int,
        default=0,
        help="extra successful requests per version per 5 s bucket (denser live histograms)",
    )
    args = parser.parse_args()
    now = [1000.0]
    clock = SharedClock(lambda: now[0], lambda: 1_767_225_600.0)
    cfg = parse_config(config(MODELS, VERSIONS), {})
    app = create_app(cfg, {}, rng=Random(1), clock=clock)
    traffic(app, now, Random(2), args.successes)
    metrics = app.current.runtime.metrics
    size = len(metrics.scrape())
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        metrics.scrape()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    print(
        f"{MODELS} models x {VERSIONS} versions: scrape {size / 1024:.0f} KiB, "
        f"median {statistics.median(times):.2f} ms, "
        f"p95 {times[int(0.95 * len(times))]:.2f} ms over {args.repeats} scrapes"
    )
    print(refresh_cost(app, 30))


if __name__ == "__main__":
    main()
