"""Test harness: real processes on free loopback ports (mock upstreams, gateways, redis-server).

Every process is started by PID and stopped by PID in teardown; nothing shared is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

T = TypeVar("T")

PY = sys.executable
# Every secret any test hands a gateway, and every gateway log: scanned at the end of the session
# (tests/conftest.py) so no scenario of the suite may print a secret.
SECRETS: set[str] = set()
GATEWAY_LOGS: list[Path] = []


class ManualClock:
    """A clock for injection that moves only when a test sets or advances `now`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def secret(value: str) -> str:
    """Register `value` as a secret the gateway must never reveal; returns it."""
    SECRETS.add(value)
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def wait_for(
    check: Callable[[], T | None], timeout: float, every: float = 0.05, what: str = ""
) -> T:
    """The first truthy value of `check()`, polled every `every` s (a wait on a condition,
    never a fixed sleep); TimeoutError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(every)
    raise TimeoutError(f"{what or 'condition'} not reached within {timeout}s")


def seconds_until(
    check: Callable[[], object], timeout: float, every: float = 0.05, what: str = ""
) -> float:
    """How long `wait_for(check, ...)` waited."""
    started = time.monotonic()
    wait_for(check, timeout, every, what)
    return time.monotonic() - started


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Mock:
    """A running `gateway mock-upstream`."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, model: str) -> None:
        self.proc, self.port, self.model = proc, port, model
        self.url = f"http://127.0.0.1:{port}/v1"

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"http://127.0.0.1:{self.port}/mock/stats").json())

    def reset(self) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/mock/reset")

    def configure(self, **knobs: Any) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/mock/config", json=knobs).raise_for_status()


@contextmanager
def mock_upstream(model: str, *args: str, log_dir: Path) -> Iterator[Mock]:
    port = free_port()
    cmd = [PY, "-m", "gateway", "mock-upstream", "--port", str(port), "--model", model, *args]
    with open(log_dir / f"mock-{port}.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", proc=proc)
        yield Mock(proc, port, model)
    finally:
        stop(proc)


class Gateway:
    """A running `gateway serve` on a generated config."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path, config: Path) -> None:
        self.proc, self.port, self.log_path, self.config_path = proc, port, log, config
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def forwarding_faults(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with every version's upstream also forwarding `x-mock-fault` (the gateway only
    forwards an allow-list of client headers; tests steer the mock upstream with this one)."""
    models = {}
    for name, model in config.get("models", {}).items():
        versions = {}
        for vid, ver in model.get("versions", {}).items():
            up = ver.get("upstream")
            if isinstance(up, dict) and "forward_headers" not in up:
                ver = {**ver, "upstream": {**up, "forward_headers": ["x-mock-fault"]}}
            versions[vid] = ver
        models[name] = {**model, "versions": versions} if versions else model
    return {**config, "models": models} if models else config


@contextmanager
def gateway(
    config: dict[str, Any], tmp: Path, env: dict[str, str] | None = None
) -> Iterator[Gateway]:
    port = free_port()
    config = {**forwarding_faults(config), "listen": {"host": "127.0.0.1", "port": port}}
    path = tmp / f"gateway-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    log_path = tmp / f"gateway-{port}.log"
    GATEWAY_LOGS.append(log_path)
    SECRETS.update(v for k, v in (env or {}).items() if "KEY" in k or "TOKEN" in k)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [PY, "-m", "gateway", "serve", "--config", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc=proc)
        yield Gateway(proc, port, log_path, path)
    finally:
        stop(proc)


def version(url: str, model: str, **extra: Any) -> dict[str, Any]:
    return {"upstream": {"url": url, "model": model}, **extra}


def require_binary(name: str) -> str:
    """The path of `name`; under CI a missing binary fails the run instead of skipping."""
    import pytest

    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI but is not installed")
        pytest.skip(f"{name} not installed")
    return path
