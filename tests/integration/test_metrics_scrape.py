"""A real scrape under traffic passes `promtool check metrics`, and every metric name the Grafana
dashboard and the alert rules use is one the gateway actually exports (so neither can silently
point at nothing)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx

from tests.support import Mock, gateway, require_binary

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created", "_info")


def used_names() -> set[str]:
    text = (ROOT / "deploy/prometheus/alerts.yml").read_text()
    text += json.dumps(json.loads((ROOT / "deploy/grafana/dashboards/gateway.json").read_text()))
    names = set(re.findall(r"(?<![:\w])(gateway_[a-z_]+)", text))
    return {n for n in names if n != "gateway_redis_up"}  # exported with the Redis store only


def base(name: str) -> str:
    for suffix in SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def test_scrape_is_valid_and_covers_dashboards_and_alerts(
    mocks: tuple[Mock, Mock], workdir: Path
) -> None:
    promtool = require_binary("promtool")
    one, two = mocks
    config = {
        "models": {
            "chat": {
                "versions": {
                    "v1": {"upstream": {"url": one.url, "model": one.model}},
                    "v2": {"upstream": {"url": two.url, "model": two.model}},
                },
                "routing": {
                    "strategy": "canary",
                    "canary": {
                        "baseline": "v1",
                        "candidate": "v2",
                        "steps": [
                            {
                                "weight": 10,
                                "min_samples": 70,  # validate: srm_floor at 10 % is 65
                                "min_duration_s": 1,
                                "max_duration_s": 120,
                            }
                        ],
                        "analysis": {"warmup_s": 1, "warmup_requests": 0, "bucket_s": 1},
                    },
                },
            }
        }
    }
    with gateway(config, workdir) as gw, httpx.Client(base_url=gw.base, timeout=10) as c:
        for i in range(60):
            c.post("/v1/chat/completions", json={"model": "chat", "stream": i % 3 == 0})
        c.post(
            "/v1/chat/completions", json={"model": "chat@v1"}, headers={"x-mock-fault": "fail:500"}
        )
        c.post("/v1/chat/completions", json={"model": "nope"})
        scrape = c.get("/metrics").text
    check = subprocess.run(
        [promtool, "check", "metrics"], input=scrape, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    exported = {base(m) for m in re.findall(r"^# TYPE (\w+)", scrape, re.M)}
    missing = sorted(n for n in used_names() if base(n) not in exported)
    assert not missing, f"dashboards/alerts use metrics the gateway does not export: {missing}"
