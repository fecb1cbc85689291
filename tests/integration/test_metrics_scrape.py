"""A real scrape under traffic passes `promtool check metrics`; every metric name the Grafana
dashboard and the alert rules use is one the gateway actually exports (so neither can silently
point at nothing); and every series selector of every dashboard query matches data in that scrape
after traffic that exercises each panel (per-key usage, the gateway's own 429s and refusals,
retries, ejections and panic, a reload, a canary decision)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.auth import new_key
from tests.support import Mock, gateway, require_binary, secret, version

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created", "_info")
SELECTOR = re.compile(r"(?<![:\w])(gateway_[a-z_]+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
ADMIN_TOKEN = secret("sc-4d1f9b27c03e8a56-admin")
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
GRAFANA_VARS = (("$__rate_interval", "1m"), ("$__range", "1h"), ("$model", "chat"))


def used_names() -> set[str]:
    text = (ROOT / "deploy/prometheus/alerts.yml").read_text()
    text += json.dumps(json.loads((ROOT / "deploy/grafana/dashboards/gateway.json").read_text()))
    names = set(re.findall(r"(?<![:\w])(gateway_[a-z_]+)", text))
    return {n for n in names if n != "gateway_redis_up"}  # exported with the Redis store only


def base(name: str) -> str:
    for suffix in SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def dashboard_exprs() -> list[str]:
    board = json.loads((ROOT / "deploy/grafana/dashboards/gateway.json").read_text())
    panels = [q for p in board["panels"] for q in (p, *p.get("panels", []))]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    for var, value in GRAFANA_VARS:
        exprs = [e.replace(var, value) for e in exprs]
    return exprs


def samples(scrape: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in scrape.splitlines():
        m = SAMPLE.match(line)
        if m and not line.startswith("#"):
            out.append((m[1], dict(LABEL.findall(m[2] or "")), float(m[3])))
    return out


def matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for name, op, want in matchers:
        have = labels.get(name, "")
        ok = {
            "=": have == want,
            "!=": have != want,
            "=~": re.fullmatch(want, have) is not None,
            "!~": re.fullmatch(want, have) is None,
        }[op]
        if not ok:
            return False
    return True


def empty_selectors(exprs: list[str], scrape: str) -> list[str]:
    """Selectors with no series in `scrape` (counters and histograms: none above zero)."""
    found = samples(scrape)
    empty = []
    for expr in exprs:
        for name, body in SELECTOR.findall(expr):
            wanted = MATCHER.findall(body or "")
            counter = name.endswith(("_total", "_bucket"))
            if not any(
                n == name and matches(labels, wanted) and (value > 0 or not counter)
                for n, labels, value in found
            ):
                empty.append(f"{name}{{{body}}}")
    return sorted(set(empty))


def test_empty_selectors_are_found() -> None:
    scrape = 'gateway_requests_total{key="a",model="chat",outcome="success",version="v1"} 3.0\n'
    scrape += (
        'gateway_requests_total{key="b",model="chat",outcome="throttled",version="none"} 0.0\n'
    )
    exprs = [
        'sum(rate(gateway_requests_total{model="chat",version!~"none|other"}[1m]))',
        'sum(rate(gateway_requests_total{outcome="throttled"}[1m]))',  # only a zero sample
        "max(gateway_inflight)",
    ]
    assert empty_selectors(exprs, scrape) == [
        "gateway_inflight{}",
        'gateway_requests_total{outcome="throttled"}',
    ]


def config(one: Mock, two: Mock, team: str, tiny: str) -> dict[str, Any]:
    chat: dict[str, Any] = {
        "versions": {"v1": version(one.url, one.model), "v2": version(two.url, two.model)},
        "routing": {
            "strategy": "canary",
            "canary": {
                "baseline": "v1",
                "candidate": "v2",
                "steps": [
                    {"weight": 10, "min_samples": 70, "min_duration_s": 1, "max_duration_s": 120}
                ],
                "analysis": {"warmup_s": 1, "warmup_requests": 0, "bucket_s": 1},
                "retry_across_arms": True,  # the failing request below is retried on the other arm
            },
            "ejection": {"consecutive_failures": 3},
        },
    }
    strict = {  # a model whose retries the budget always refuses
        "versions": {"v1": version(one.url, one.model), "v2": version(two.url, two.model)},
        "routing": {
            "weights": {"v1": 50, "v2": 50},
            "retry": {"budget_percent": 0, "min_retries": 0},
        },
    }
    keys = [
        {"id": "team-a", "sha256": team},
        {
            "id": "tiny",
            "sha256": tiny,
            "rate_limit": {"requests_per_minute": 1, "tokens_per_minute": 10**6},
        },  # tokens: charged with the body, so refusals name the model
    ]
    return {
        "auth": {"keys": keys},
        "admin": {"token_env": "SCRAPE_ADMIN_TOKEN"},
        "limits": {"max_body_bytes": 4096},
        "models": {"chat": chat, "strict": strict},
    }


def canary_traffic(c: httpx.Client, team: str) -> None:
    auth = {"authorization": f"Bearer {team}"}
    for i in range(60):
        c.post("/v1/chat/completions", json={"model": "chat", "stream": i % 3 == 0}, headers=auth)


def traffic(c: httpx.Client, team: str, tiny: str) -> None:
    auth = {"authorization": f"Bearer {team}"}
    fail = {**auth, "x-mock-fault": "fail:500"}
    c.post("/v1/chat/completions", json={"model": "chat"}, headers=fail)  # retried, then 500
    c.post("/v1/chat/completions", json={"model": "strict"}, headers=fail)  # budget refuses
    c.post("/v1/chat/completions", json={"model": "nope"}, headers=auth)
    c.post("/v1/chat/completions", json={"model": "chat@v9"}, headers=auth)  # refused for chat
    c.post("/v1/chat/completions", content=b"x" * 5000, headers=auth)  # 413, gateway's own
    for _ in range(2):  # the second is over the key's limit: the gateway's own 429
        c.post(
            "/v1/chat/completions",
            json={"model": "chat"},
            headers={"authorization": f"Bearer {tiny}"},
        )
    c.post("/v1/chat/completions", json={"model": "chat"})  # no key: 401, anonymous
    c.post(
        "/v1/chat/completions",
        json={"model": "chat"},
        headers={**auth, "x-mock-fault": "fail:429"},
    )  # the upstream's 429 (`rate_limited`), relayed
    for pinned in ("chat@v1", "chat@v2"):  # both versions ejected: panic mode
        for _ in range(3):
            c.post("/v1/chat/completions", json={"model": pinned}, headers=fail)


def wait_for(c: httpx.Client, pattern: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        scrape = c.get("/metrics").text
        if re.search(pattern, scrape, re.M) or time.monotonic() > deadline:
            return scrape
        time.sleep(0.2)


def test_scrape_is_valid_and_covers_dashboards_and_alerts(
    mocks: tuple[Mock, Mock], workdir: Path
) -> None:
    promtool = require_binary("promtool")
    team, team_digest = new_key()
    tiny, tiny_digest = new_key()
    with (
        gateway(
            config(*mocks, team_digest, tiny_digest), workdir, {"SCRAPE_ADMIN_TOKEN": ADMIN_TOKEN}
        ) as gw,
        httpx.Client(base_url=gw.base, timeout=10) as c,
    ):
        canary_traffic(c, team)
        wait_for(c, r"^gateway_canary_evalue\{")  # the controller judged the candidate
        paused = c.post("/admin/models/chat/canary/pause", headers=ADMIN)  # a canary decision
        assert paused.status_code == 200, paused.text
        traffic(c, team, tiny)
        gw.proc.send_signal(signal.SIGHUP)  # a reload (the file is unchanged: still counted)
        scrape = wait_for(c, r"^gateway_config_reloads_total\{")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=scrape, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    exported = {base(m) for m in re.findall(r"^# TYPE (\w+)", scrape, re.M)}
    missing = sorted(n for n in used_names() if base(n) not in exported)
    assert not missing, f"dashboards/alerts use metrics the gateway does not export: {missing}"
    empty = empty_selectors(dashboard_exprs(), scrape)
    assert not empty, f"dashboard queries with no data after traffic: {empty}"
