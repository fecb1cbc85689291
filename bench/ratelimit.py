"""What per-key rate limiting shared through Redis adds to a request (issue 7: ≤ 0.3 ms p50).

Two gateways on the same 0 ms mock, measured alternately with wrk at 1 connection: `open` (no
keys, memory store) and `limited` (one API key with a per-minute request and token limit far
above the load, store and limits in a private redis-server, so every request makes the one
Redis round trip). Gateways on core 0; wrk, mock and Redis on core 1. Medians of the repeats.

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


def gateway_config(port: int, mock: int, redis: int | None) -> dict[str, object]:
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
        cfg["store"] = {"backend": "redis", "redis_url": f"redis://127.0.0.1:{redis}/0"}
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


def p50(port: int, duration: int, auth: str | None) -> float:
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
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-rl-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis, mock, open_port, limited_port = free_port(), free_port(), free_port(), free_port()
        procs.append(
            start(
                [
                    "redis-server",
                    "--port",
                    str(redis),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(tmp),
                ],
                1,
                tmp / "redis.log",
            )
        )
        procs.append(
            start([PY, "-m", "gateway", "mock-upstream", "--port", str(mock)], 1, tmp / "mock.log")
        )
        for port, rport in ((open_port, None), (limited_port, redis)):
            path = tmp / f"gw-{port}.yaml"
            path.write_text(yaml.safe_dump(gateway_config(port, mock, rport)))
            procs.append(
                start(
                    [PY, "-m", "gateway", "serve", "--config", str(path)], 0, tmp / f"gw-{port}.log"
                )
            )
        for port in (open_port, limited_port):
            wait(f"http://127.0.0.1:{port}/readyz")
        results: dict[str, list[float]] = {"open": [], "limited": []}
        for _ in range(args.repeats):
            results["open"].append(p50(open_port, args.duration, None))
            results["limited"].append(p50(limited_port, args.duration, KEY))
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"p50 ms per repeat: {results}")
        print(
            f"median p50: open {med['open']:.3f} ms, limited {med['limited']:.3f} ms, "
            f"added {med['limited'] - med['open']:.3f} ms"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
