"""`gateway demo` works from a real (non-editable) install, from any directory: it serves a chat
completion, `gateway status` works with the token it prints, SIGHUP reloads it and SIGTERM stops
it and its mock upstreams (docs/cli.md)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support import free_port

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel built from this tree (not an editable install). Its
    dependencies come from the test venv's site-packages through a .pth file, so this proves
    what the wheel carries (the package data), not what PyPI serves."""
    tmp = tmp_path_factory.mktemp("install")
    wheels = tmp / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(wheels), str(ROOT)],
        check=True,
    )  # fmt: skip
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
         str(wheel)],
        check=True,
    )  # fmt: skip
    return venv


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.fixture
def demo(installed: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GATEWAY_ADMIN_TOKEN")}
    proc = subprocess.Popen(
        [str(installed / "bin" / "python"), "-c", "from gateway.cli import main; main()",
         "demo", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    token, lines = "", []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not token:
        line = proc.stdout.readline()
        lines.append(line)
        if m := re.search(r"export GATEWAY_ADMIN_TOKEN=(\S+)", line):
            token = m.group(1)
    assert token, "".join(lines)
    # keep reading: a demo whose output pipe is full blocks on its next log line
    threading.Thread(target=proc.stdout.readlines, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    try:
        yield proc, port, token
    finally:
        if proc.poll() is None:  # SIGTERM: the demo stops its mock upstreams too
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_demo_from_a_wheel_serves_reloads_and_stops_cleanly(
    demo: tuple[subprocess.Popen[str], int, str], installed: Path
) -> None:
    proc, port, token = demo
    base = f"http://127.0.0.1:{port}"
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content
    status = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "from gateway.cli import main; main()",
         "status", "--url", base],
        env={**os.environ, "GATEWAY_ADMIN_TOKEN": token}, capture_output=True, text=True,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "v1" in status.stdout and "v2" in status.stdout
    mocks = _children(proc.pid)
    assert len(mocks) == 2
    proc.send_signal(signal.SIGHUP)  # a reload, not the end
    again = client.chat.completions.create(
        model="chat@v2", messages=[{"role": "user", "content": "hi"}]
    )
    assert again.choices[0].message.content and proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    end = time.monotonic() + 10
    while time.monotonic() < end and any(_alive(pid) for pid in mocks):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in mocks), "mock upstreams outlived the demo"


def _canary(installed: Path, base: str, token: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "from gateway.cli import main; main()",
         "canary", *args, "assistant", "--url", base],
        env={**os.environ, "GATEWAY_ADMIN_TOKEN": token}, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    answer: dict[str, Any] = json.loads(out.stdout)
    return answer


async def _traffic(base: str, requests: int) -> None:
    body = {"model": "assistant", "messages": []}
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        for _ in range(requests // 8):
            await asyncio.gather(
                *(client.post("/v1/chat/completions", json=body) for _ in range(8))
            )


def test_the_readme_tour_canary_rolls_back_a_broken_version_and_restarts(
    demo: tuple[subprocess.Popen[str], int, str], installed: Path
) -> None:
    """README's tour: `v2` failing 20 % is rolled back within 3,000 requests to `assistant`;
    mended and restarted, it is back in its first step."""
    _, port, token = demo
    base = f"http://127.0.0.1:{port}"
    mock = "http://127.0.0.1:9002/mock/config"  # the demo config's v2 upstream
    httpx.post(mock, json={"error_rate": 0.2}).raise_for_status()
    state = _canary(installed, base, token, "status")["state"]
    for _ in range(6):
        asyncio.run(_traffic(base, 500))
        state = _canary(installed, base, token, "status")["state"]
        if state == "rolled_back":
            break
    assert state == "rolled_back"
    httpx.post(mock, json={"error_rate": 0}).raise_for_status()
    _canary(installed, base, token, "restart")
    status = _canary(installed, base, token, "status")
    assert (status["state"], status["step"], status["weight"]) == ("progressing", 0, 20.0)
