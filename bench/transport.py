"""Same-run comparison of the two candidate upstream clients: aiohttp against httpx.

Why the gateway carries upstream traffic on aiohttp: each client, in a process of its own pinned
to the proxy core, sends the same non-streamed chat completions (the body the gateway forwards)
to one mock upstream on the load core, `--conns` at a time over keep-alive connections, and
reports its CPU time per request (user + system, from `resource`), the part a gateway pays for
its client. Rounds alternate the order; medians over the rounds and the httpx/aiohttp ratio are
printed.

Usage: ``.venv/bin/python bench/transport.py [--conns 16] [--rounds 5] [--requests 4000]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time

from lib import BENCH, PROXY_CORE, Procs
from run import start_mock

BODY = json.dumps(
    {"model": "mock-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
).encode()
HEADERS = {"content-type": "application/json", "authorization": "Bearer bench"}


async def with_aiohttp(url: str, conns: int, requests: int) -> None:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(n: int) -> None:
            for _ in range(n):
                async with session.post(url, data=BODY, headers=HEADERS) as resp:
                    await resp.read()
                    assert resp.status == 200

        await asyncio.gather(*(worker(requests // conns) for _ in range(conns)))


async def with_httpx(url: str, conns: int, requests: int) -> None:
    import httpx

    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(limits=limits) as client:

        async def worker(n: int) -> None:
            for _ in range(n):
                resp = await client.post(url, content=BODY, headers=HEADERS)
                assert resp.status_code == 200

        await asyncio.gather(*(worker(requests // conns) for _ in range(conns)))


CLIENTS = {"aiohttp": with_aiohttp, "httpx": with_httpx}


def child(name: str, url: str, conns: int, requests: int) -> None:
    """One measurement, in this process: prints µs of CPU and of wall time per request."""
    asyncio.run(CLIENTS[name](url, conns, conns * 2))  # warm-up: connections open, code loaded
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    asyncio.run(CLIENTS[name](url, conns, requests))
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - started
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(json.dumps({"cpu_us": cpu / requests * 1e6, "wall_us": wall / requests * 1e6}))


def measure(name: str, url: str, conns: int, requests: int) -> dict[str, float]:
    argv = ["taskset", "-c", PROXY_CORE, sys.executable, __file__, "--child", name, url]
    argv += ["--conns", str(conns), "--requests", str(requests)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=BENCH)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--child", nargs=2, metavar=("CLIENT", "URL"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.conns, args.requests)
        return 0
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    procs = Procs(out)
    try:
        mock = start_mock(procs, 0)
        url = f"http://127.0.0.1:{mock.port}/v1/chat/completions"
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in CLIENTS}
        for round_ in range(args.rounds):
            order = list(CLIENTS) if round_ % 2 == 0 else list(reversed(CLIENTS))
            for name in order:
                runs[name].append(measure(name, url, args.conns, args.requests))
    finally:
        procs.stop_all()
    medians = {
        name: {k: statistics.median(r[k] for r in results) for k in ("cpu_us", "wall_us")}
        for name, results in runs.items()
    }
    for name, m in medians.items():
        print(f"{name:8s} CPU {m['cpu_us']:7.1f} µs/request   wall {m['wall_us']:7.1f} µs/request")
    ratio = medians["httpx"]["cpu_us"] / medians["aiohttp"]["cpu_us"]
    print(f"httpx/aiohttp client CPU per request: {ratio:.2f}x (medians of {args.rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
