"""How long one /metrics scrape takes with 10 models x 5 versions (issue 6: under 5 ms).

Builds the real app for a generated config, records traffic for every version so every series
exists (requests by outcome, histograms, tokens, upstream attempts), then times the scrape
endpoint's work (`Metrics.scrape`, including the live-store collector) in-process.

    .venv/bin/python bench/scrape.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from random import Random

from gateway.app import create_app
from gateway.config import parse_config
from gateway.exchange import OUTCOMES, Attempt, Exchange


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    app = create_app(parse_config(config(10, 5), {}), {}, rng=Random(1))
    metrics = app.gateway.runtime.metrics
    for m in range(10):
        for v in range(5):
            for outcome in OUTCOMES:
                ex = Exchange(
                    "r",
                    "/v1/chat/completions",
                    0.0,
                    model=f"m{m}",
                    version=f"v{v}",
                    outcome=outcome,
                    ttft=0.05,
                    duration=0.2,
                    prompt_tokens=10,
                    completion_tokens=20,
                )
                ex.attempts.append(
                    Attempt(f"v{v}", 0.0, False, outcome=outcome, ttft=0.05, duration=0.2)
                )
                metrics.record(ex)
                metrics.attempted(f"m{m}", ex.attempts[0])
    size = len(metrics.scrape())
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        metrics.scrape()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    print(
        f"10 models x 5 versions: scrape {size / 1024:.0f} KiB, "
        f"median {statistics.median(times):.2f} ms, "
        f"p95 {times[int(0.95 * len(times))]:.2f} ms over {args.repeats} scrapes"
    )


if __name__ == "__main__":
    main()
