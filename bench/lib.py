"""Helpers for ``bench/run.py``: free ports, pinned server processes, wrk, RSS and a TTFB client.

Every server is started through `Procs`, which remembers its PID and stops it in `stop_all`.
Cores: the proxy under test runs on `PROXY_CORE`; mocks, wrk and the harness itself on `LOAD_CORE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CHAT_PATH = "/v1/chat/completions"
PROXY_CORE = "0"
LOAD_CORE = "1"
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """One started server process (its PID is the PID of the pinned program: taskset execs)."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")


class Procs:
    """Starts servers pinned to a core with output to ``out/<name>.log``; stops them by PID."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.servers: list[Server] = []

    def start(self, name: str, argv: list[str], core: str, port: int) -> Server:
        log = self.out_dir / f"{name}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                ["taskset", "-c", core, *argv],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
            )
        server = Server(name, port, proc, log)
        self.servers.append(server)
        return server

    def stop(self, server: Server) -> None:
        if server.proc.poll() is None:
            server.proc.terminate()
            try:
                server.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait(timeout=10)
        if server in self.servers:
            self.servers.remove(server)

    def stop_all(self) -> None:
        for server in list(reversed(self.servers)):
            with contextlib.suppress(Exception):
                self.stop(server)


def wait_http(server: Server, path: str, timeout_s: float = 30.0) -> None:
    """Poll ``GET path`` until it answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            with urllib.request.urlopen(server.base + path, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{server.name}: {path} not ready after {timeout_s:.0f}s (see {server.log})")


def wait_tcp(server: Server, timeout_s: float = 30.0) -> None:
    """Poll a TCP connect until the port accepts."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        server.check_alive()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", server.port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{server.name}: port {server.port} not open after {timeout_s:.0f}s")


def post_json(url: str, body: bytes, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """One POST; returns (status, body) for any HTTP status."""
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text: str = resp.read().decode()
        return text


def requests_total(metrics_text: str) -> float:
    """Sum of every ``gateway_requests_total{...}`` sample in a Prometheus scrape."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("gateway_requests_total{")
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _core_busy_ticks(core: int) -> int:
    """Busy clock ticks (user+nice+system+irq+softirq+steal) of one core from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            f = [int(x) for x in line.split()[1:9]]
            return f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
    raise RuntimeError(f"no cpu{core} in /proc/stat")


def _proc_ticks(pid: int | None) -> int:
    if pid is None:
        return 0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def cpu_snapshot(proxy: int | None, mock: int) -> dict[str, float]:
    """CPU seconds so far: per core, the proxy, the mock, and the clients (wrk, this process)."""
    hz = os.sysconf("SC_CLK_TCK")
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "t": time.monotonic(),
        "core0": _core_busy_ticks(0) / hz,
        "core1": _core_busy_ticks(1) / hz,
        "proxy": _proc_ticks(proxy) / hz,
        "mock": _proc_ticks(mock) / hz,
        "client": kids.ru_utime + kids.ru_stime + me.ru_utime + me.ru_stime,
    }


def wait_quiet(max_wait_s: float = 15.0, busy_pct: float = 10.0) -> float:
    """Between runs (nothing of ours busy): wait until both cores idle for 0.5 s; seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < max_wait_s:
        before = [_core_busy_ticks(c) for c in (0, 1)]
        time.sleep(0.5)
        after = [_core_busy_ticks(c) for c in (0, 1)]
        hz = os.sysconf("SC_CLK_TCK")
        if all((a - b) * 100 / (0.5 * hz) < busy_pct for a, b in zip(after, before, strict=True)):
            break
    return time.monotonic() - start


def cpu_usage(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Percent of one core over the interval, and the "foreign" load on each core.

    Core 0 should run only the proxy under test, core 1 only the mock, wrk and this harness
    (the TTFB client); busy time beyond theirs is other processes on the machine (or kernel
    work such as loopback softirqs) and makes the sample suspect.
    """
    d = {k: (after[k] - before[k]) * 100 / (after["t"] - before["t"]) for k in before}
    return {
        "core0_busy_pct": round(d["core0"], 1),
        "core1_busy_pct": round(d["core1"], 1),
        "proxy_cpu_pct": round(d["proxy"], 1),
        "mock_cpu_pct": round(d["mock"], 1),
        "client_cpu_pct": round(d["client"], 1),
        "core0_foreign_pct": round(max(0.0, d["core0"] - d["proxy"]), 1),
        "core1_foreign_pct": round(max(0.0, d["core1"] - d["mock"] - d["client"]), 1),
    }


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: int


def _ms(value: str, unit: str) -> float:
    return float(value) * UNITS_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Requests/s, p50/p99 (converted to ms), totals and errors from ``wrk --latency`` output."""
    pct = dict(re.findall(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+(?:us|ms|s|m|h))\s*$", text, re.M))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if not (rps and total and "50" in pct and "99" in pct):
        raise ValueError(f"cannot parse wrk output:\n{text}")
    lat = {k: re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", v) for k, v in pct.items()}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=_ms(*lat["50"].groups()),  # type: ignore[union-attr]
        p99_ms=_ms(*lat["99"].groups()),  # type: ignore[union-attr]
        requests=int(total.group(1)),
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(map(int, sock.groups())) if sock else 0,
    )


def run_wrk(url: str, connections: int, duration_s: int, model: str) -> WrkResult:
    """``wrk -t1 -cN -dDs --latency`` with bench/post.lua, pinned to the load core."""
    cmd = [
        "taskset",
        "-c",
        LOAD_CORE,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--latency",
        "-s",
        str(BENCH / "post.lua"),
        url,
    ]
    env = {**os.environ, "WRK_MODEL": model}
    out = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr}\n{out.stdout}")
    return parse_wrk(out.stdout)


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile (pct in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def _read_chunked(reader: asyncio.StreamReader, t0: float) -> float | None:
    """Consume a chunked body; the elapsed ms when the first chunk containing ``data:`` arrived."""
    first: float | None = None
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        if first is None and b"data:" in chunk:
            first = (time.perf_counter() - t0) * 1000
        if size == 0:
            return first


async def _one_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> float:
    t0 = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    lower = head.lower()
    if status != 200:
        raise RuntimeError(f"streamed request answered {status}: {head!r}")
    if b"transfer-encoding: chunked" in lower:
        first = await _read_chunked(reader, t0)
    else:
        length = int(re.search(rb"content-length:\s*(\d+)", lower).group(1))  # type: ignore[union-attr]
        body = await reader.readexactly(length)
        first = (time.perf_counter() - t0) * 1000 if b"data:" in body else None
    if first is None:
        raise RuntimeError("streamed response had no 'data:' event")
    return first


async def _ttfb_async(port: int, body: bytes, count: int, warmup: int) -> list[float]:
    request = (
        f"POST {CHAT_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        samples = [await _one_stream(reader, writer, request) for _ in range(warmup + count)]
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return samples[warmup:]


def measure_ttfb(port: int, body: bytes, count: int = 300, warmup: int = 20) -> list[float]:
    """TTFB (ms) of ``count`` sequential streamed requests on one keep-alive connection."""
    return asyncio.run(_ttfb_async(port, body, count, warmup))
