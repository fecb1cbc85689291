"""Benchmark: the gateway with the Redis store against the same gateway with the memory store.

Targets, all in front of one 0 ms mock upstream: ``floor`` (bench/floor_proxy.py, for the core
issue's gateway/floor target), ``gw-memory`` (``store.backend: memory``) and ``gw-redis``
(``store.backend: redis`` on a private redis-server started here on a free port). Matrix:
connections 1/16/64, wrk ``-t1 -cN -dDs --latency`` after a discarded 1 s warm-up, targets
interleaved with the order rotated per repeat, medians over repeats, and a pause between repeats
so the 2-core machine is not saturated for long. Pinning as bench/run.py: proxies on core 0;
mock, redis-server, wrk and this script on core 1.

Besides throughput and latency it records the gateway's CPU time per request (from /proc: less
sensitive than req/s to other load on the machine) and, in-process, the CPU cost of the store's
background work (one flush, one refresh) and of `record()` for each backend.

Usage: ``.venv/bin/python bench/store.py [--duration S] [--repeats N] [--pause S] [--out FILE]``.
Prints a Markdown table for bench/RESULTS.md and writes the raw samples as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lib import (
    BENCH,
    CHAT_PATH,
    LOAD_CORE,
    PROXY_CORE,
    Procs,
    Server,
    free_port,
    post_json,
    run_wrk,
    wait_http,
    wait_tcp,
)
from run import (
    PUBLIC_MODEL,
    UPSTREAM_MODEL,
    chat_body,
    gateway_yaml,
    machine_notes,
    start_floor,
    start_mock,
)

TARGETS = ("floor", "gw-memory", "gw-redis")
CONNECTIONS = (1, 16, 64)


def start_redis(procs: Procs) -> Server:
    port = free_port()
    argv = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(procs.out_dir),
    ]
    server = procs.start("redis", argv, LOAD_CORE, port)
    wait_tcp(server)
    return server


def start_gateway(procs: Procs, upstream: Server, name: str, store: str) -> Server:
    port = free_port()
    config = procs.out_dir / f"{name}.yaml"
    config.write_text(gateway_yaml(port, upstream, f"store: {store}\n"))
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    server = procs.start(
        f"gateway-{'redis' if 'redis' in store else 'memory'}", argv, PROXY_CORE, port
    )
    wait_http(server, "/readyz")
    return server


def measure_all(
    targets: dict[str, tuple[Server, str]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    samples = []
    for rep in range(args.repeats):
        if rep:
            time.sleep(args.pause)
        order = TARGETS[rep % 3 :] + TARGETS[: rep % 3]
        for conns in CONNECTIONS:
            for name in order:
                server, model = targets[name]
                server.check_alive()
                run_wrk(server.base + CHAT_PATH, conns, 1, model)
                cpu = cpu_seconds(server.pid)
                result = run_wrk(server.base + CHAT_PATH, conns, args.duration, model)
                cpu_us = (cpu_seconds(server.pid) - cpu) / max(result.requests, 1) * 1e6
                bad = result.non2xx + result.socket_errors
                print(
                    f"  r{rep} c{conns:<2} {name:<9} {result.rps:8.0f} rps  "
                    f"p50 {result.p50_ms:6.2f}  p99 {result.p99_ms:6.2f} ms  "
                    f"cpu {cpu_us:5.0f} us/req"
                    f"{'  !! errors ' + str(bad) if bad else ''}",
                    flush=True,
                )
                sample = {"repeat": rep, "target": name, "connections": conns}
                samples.append({**sample, "cpu_us_per_request": cpu_us, **result.__dict__})
    return samples


def table(samples: list[dict[str, Any]]) -> list[str]:
    def med(name: str, conns: int, key: str) -> float:
        return statistics.median(
            s[key] for s in samples if s["target"] == name and s["connections"] == conns
        )

    def paired(conns: int) -> float:
        """Median over repeats of redis/memory rps measured back to back in the same repeat."""
        by_rep: dict[int, dict[str, float]] = {}
        for s in samples:
            if s["connections"] == conns:
                by_rep.setdefault(s["repeat"], {})[s["target"]] = s["rps"]
        return statistics.median(r["gw-redis"] / r["gw-memory"] for r in by_rep.values())

    lines = [
        "| conns | floor rps | gw-memory rps | gw-redis rps | redis/memory rps (paired) "
        "| memory p50 / p99 ms | redis p50 / p99 ms | CPU µs/req memory / redis "
        "| memory/floor rps |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for conns in CONNECTIONS:
        floor, mem, red = (med(t, conns, "rps") for t in TARGETS)
        cpu_mem, cpu_red = (med(t, conns, "cpu_us_per_request") for t in TARGETS[1:])
        lines.append(
            f"| {conns} | {floor:.0f} | {mem:.0f} | {red:.0f} "
            f"| {red / mem:.2f} ({paired(conns):.2f}) "
            f"| {med('gw-memory', conns, 'p50_ms'):.2f} / {med('gw-memory', conns, 'p99_ms'):.2f} "
            f"| {med('gw-redis', conns, 'p50_ms'):.2f} / {med('gw-redis', conns, 'p99_ms'):.2f} "
            f"| {cpu_mem:.0f} / {cpu_red:.0f} | {mem / floor:.2f} |"
        )
    return lines


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (robust to a busy machine, unlike rps)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def background_cost(redis_port: int, attempts: int = 750) -> dict[str, dict[str, float]]:
    """CPU of the store's background work, in-process: one flush of `attempts` (4 per second at
    3,000 req/s), one refresh, and the request path's `record()` call, per backend."""
    from gateway.config.schema import Store
    from gateway.exchange import Attempt
    from gateway.livestats import build_sync

    series = [("chat", "v1"), ("chat", "v2"), ("chat", "v3")]
    batch = [
        [Attempt(f"v{i % 3 + 1}", 0, False, "success", 200, 0.01, 0.02 + i % 7 / 100, 10, 20)]
        for i in range(attempts)
    ]
    out = {}
    for backend in ("memory", "redis"):
        url = f"redis://127.0.0.1:{redis_port}/0"
        sync = build_sync(
            Store.model_validate({"backend": backend, "redis_url": url}), {}, lambda: series
        )
        await sync.start()
        began = time.process_time()
        for _ in range(40):
            for item in batch:
                sync.record("chat", item)
            await sync.flush()
        flushed = time.process_time()
        for _ in range(20):
            await sync.refresh()
        refreshed = time.process_time()
        start = time.perf_counter()
        for item in batch:
            sync.record("chat", item)
        record_us = (time.perf_counter() - start) / attempts * 1e6
        await sync.stop()
        out[backend] = {
            "flush_ms": (flushed - began) / 40 * 1000,
            "refresh_ms": (refreshed - flushed) / 20 * 1000,
            "record_us": record_us,
        }
        print(
            f"  {backend:<6} flush of {attempts} attempts {out[backend]['flush_ms']:.2f} ms CPU, "
            f"refresh {out[backend]['refresh_ms']:.2f} ms, record() {record_us:.2f} us",
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Gateway with the Redis store vs the memory store")
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pause", type=float, default=5.0, help="seconds of rest between repeats")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "store.json")
    args = parser.parse_args(argv)
    out_dir = BENCH / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = Procs(out_dir)
    try:
        mock = start_mock(procs, 0)
        redis = start_redis(procs)
        targets = {
            "floor": (start_floor(procs, mock, "store"), UPSTREAM_MODEL),
            "gw-memory": (
                start_gateway(procs, mock, "gw-memory", "{backend: memory}"),
                PUBLIC_MODEL,
            ),
            "gw-redis": (
                start_gateway(
                    procs,
                    mock,
                    "gw-redis",
                    f"{{backend: redis, redis_url: 'redis://127.0.0.1:{redis.port}/0'}}",
                ),
                PUBLIC_MODEL,
            ),
        }
        for name, (server, model) in targets.items():
            status, body = post_json(server.base + CHAT_PATH, chat_body(model))
            if status != 200 or b'"choices"' not in body:
                raise SystemExit(f"FATAL: {name} answered {status}: {body!r}")
        samples = measure_all(targets, args)
        keys = redis_keys(redis)
        print("background work of the store (in-process):", flush=True)
        cost = asyncio.run(background_cost(redis.port))
    finally:
        procs.stop_all()
    lines = table(samples)
    print("\n```markdown\n" + "\n".join(lines) + "\n```")
    meta = {**machine_notes(), "redis_keys_written": keys, "load_average": os.getloadavg()}
    payload = {"meta": meta, "samples": samples, "table": lines, "background": cost}
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"redis keys written by gw-redis: {keys}\nwrote {args.out}")
    return 0 if keys else 1


def redis_keys(redis: Server) -> int:
    """How many live-store keys the Redis gateway wrote (0 would mean it never used Redis)."""
    out = subprocess.run(
        ["redis-cli", "-p", str(redis.port), "--scan", "--pattern", "gw:*"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return len(out.stdout.split())


if __name__ == "__main__":
    sys.exit(main())
