"""What per-key rate limiting shared through Redis adds to a request (issue 7: ≤ 0.3 ms p50).

Three gateways on the same 0 ms mock, measured in turn with wrk at 1 connection: `open` (no
keys, memory store), `limited` (one API key with a per-minute request and token limit far
above the load, store and limits in a private redis-server: the common case, where most
requests spend leased credits and only some make the Redis round trip) and `exact` (the same,
with leases switched off, so every request makes the round trip — what each request pays near
a key's limit). Gateways on core 0; wrk, mock and Redis on core 1. Medians of the repeats; for
the limited gateways also the Redis round trips per request (EVALSHA calls / wrk requests).

    .venv/bin/python bench/ratelimit.py [--repeats 5] [--duration 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis as redis_lib
import yaml

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv/bin/python")
KEY = "bench-ratelimit-key-4f2a9c1e"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str) -> None:
    for _ in range(200):
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


def start(cmd: list[str], core: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["taskset", "-c", str(core), *cmd], stdout=out, stderr=subprocess.STDOUT
        )


NO_LEASE = (
    "import gateway.ratelimit.lease as lease; lease.LEASE_FRACTION = 10**18; "
    "from gateway.cli import main; raise SystemExit(main())"
)


def gateway_config(port: int, mock: int, redis: int | None, prefix: str) -> dict[str, object]:
    cfg: dict[str, object] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "logging": {"access": True},
        "models": {
            "chat": {
                "versions": {
                    "v1": {"upstream": {"url": f"http://127.0.0.1:{mock}/v1", "model": "m"}}
                }
            }
        },
    }
    if redis is not None:
        cfg["store"] = {
            "backend": "redis",
            "redis_url": f"redis://127.0.0.1:{redis}/0",
            "key_prefix": prefix,
        }
        limit = {"requests_per_minute": 10_000_000, "tokens_per_minute": 10_000_000_000}
        cfg["auth"] = {
            "keys": [
                {
                    "id": "bench",
                    "sha256": hashlib.sha256(KEY.encode()).hexdigest(),
                    "rate_limit": limit,
                }
            ]
        }
    return cfg


def p50(port: int, duration: int, auth: str | None) -> tuple[float, int]:
    """wrk's median latency (ms) and how many requests it made."""
    env = {**os.environ, **({"WRK_AUTH": auth} if auth else {})}
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            "-c1",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(ROOT / "bench/post.lua"),
            f"http://127.0.0.1:{port}/v1/chat/completions",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    value, unit = re.search(r"50%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    count = re.search(r"(\d+) requests in", out).group(1)  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], int(count)


def evalsha_calls(port: int) -> int:
    stats = redis_lib.Redis(port=port).info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def measure(
    ports: dict[str, int], redis: int, args: argparse.Namespace
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """p50 per variant per repeat, and round trips per request for the limited ones."""
    latency: dict[str, list[float]] = {name: [] for name in ports}
    trips: dict[str, list[float]] = {name: [] for name in ports if name != "open"}
    for _ in range(args.repeats):
        for name, port in ports.items():
            before = evalsha_calls(redis)
            ms, count = p50(port, args.duration, None if name == "open" else KEY)
            latency[name].append(ms)
            if name in trips:
                trips[name].append(round((evalsha_calls(redis) - before) / count, 4))
    return latency, trips


def start_gateways(
    tmp: Path, redis: int, mock: int, procs: list[subprocess.Popen[bytes]]
) -> dict[str, int]:
    ports = {"open": free_port(), "limited": free_port(), "exact": free_port()}
    for name, port in ports.items():
        path = tmp / f"gw-{name}.yaml"
        rport = None if name == "open" else redis
        path.write_text(yaml.safe_dump(gateway_config(port, mock, rport, f"gw-{name}")))
        run = [PY, "-c", NO_LEASE] if name == "exact" else [PY, "-m", "gateway"]
        procs.append(start([*run, "serve", "--config", str(path)], 0, tmp / f"gw-{name}.log"))
    for port in ports.values():
        wait(f"http://127.0.0.1:{port}/readyz")
    return ports


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-rl-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis, mock = free_port(), free_port()
        redis_cmd = ["redis-server", "--port", str(redis), "--save", "", "--appendonly", "no"]
        procs.append(start([*redis_cmd, "--dir", str(tmp)], 1, tmp / "redis.log"))
        procs.append(
            start([PY, "-m", "gateway", "mock-upstream", "--port", str(mock)], 1, tmp / "mock.log")
        )
        ports = start_gateways(tmp, redis, mock, procs)
        latency, trips = measure(ports, redis, args)
        med = {k: statistics.median(v) for k, v in latency.items()}
        print(f"p50 ms per repeat: {latency}")
        print(f"redis round trips per request: {trips}")
        print(
            f"median p50: open {med['open']:.3f} ms, limited {med['limited']:.3f} ms "
            f"(added {med['limited'] - med['open']:.3f} ms), exact {med['exact']:.3f} ms "
            f"(added {med['exact'] - med['open']:.3f} ms)"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
