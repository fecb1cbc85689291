"""Redis for tests: private `redis-server` processes on free loopback ports, faults, a 3-node cluster.

Every server is started by PID with no persistence (`--save '' --appendonly no`) in a temporary
directory, and stopped by PID. Faults: `kill()` (SIGKILL: connections refused), `freeze()` /
`thaw()` (SIGSTOP / SIGCONT: a blackhole), `pause(ms)` (`CLIENT PAUSE ... ALL`), and `restart()`
on the same port.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import free_port, require_binary


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None, *extra: str) -> None:
        self.binary = require_binary("redis-server")
        self.cli_binary = require_binary("redis-cli")
        self.port = port or free_port()
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        cmd = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            *self.extra,
        ]
        with open(self.dir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                if self.cli("PING").strip() == "PONG":
                    return
            except subprocess.SubprocessError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"redis-server on {self.port} not ready")

    def cli(self, *args: str, timeout: float = 5.0) -> str:
        out = subprocess.run(
            [self.cli_binary, "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return out.stdout

    def kill(self) -> None:
        """SIGKILL: the port refuses connections until `restart()`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        deadline = time.monotonic() + 5
        while not _port_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.start()

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def pause(self, ms: int) -> None:
        assert self.cli("CLIENT", "PAUSE", str(ms), "ALL").strip() == "OK"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, so at most 55535.

    Ephemeral ports (`free_port`) are often above 55535, where redis-server refuses cluster mode.
    Candidates come from 20000-32767, below Linux's ephemeral range, to avoid racing other
    processes' outgoing connections.
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, 32767)
        if _port_free(port) and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def redis_cluster(workdir: Path, nodes: int = 3) -> Iterator[list[RedisServer]]:
    """`nodes` masters (no replicas) joined with `redis-cli --cluster create`."""
    servers: list[RedisServer] = []
    try:
        for _ in range(nodes):
            port = cluster_port()
            extra = ("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf")
            servers.append(RedisServer(workdir, port, *extra).start())
        addresses = [f"127.0.0.1:{s.port}" for s in servers]
        created = subprocess.run(
            [servers[0].cli_binary, "--cluster", "create", *addresses, "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        _wait_cluster_ok(servers)
        yield servers
    finally:
        for server in servers:
            server.stop()


def _wait_cluster_ok(servers: list[RedisServer], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all("cluster_state:ok" in s.cli("CLUSTER", "INFO") for s in servers):
            return
        time.sleep(0.1)
    raise TimeoutError("redis cluster did not reach cluster_state:ok")
