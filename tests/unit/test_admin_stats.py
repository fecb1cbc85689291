"""GET /admin/models/{model}/stats and the matching Prometheus series, with an injected transport."""

from __future__ import annotations

import pytest

from gateway.app import App
from gateway.auth import new_key
from tests.fakes import FakeResponse
from tests.inproc import AUTH, faked, send
from tests.samples import GOOD

PERF = """\
admin: {token_env: ADMIN_TOKEN}
models:
  chat:
    versions:
      v1: {upstream: {url: "http://127.0.0.1:9001/v1", model: "m"}}
      v2: {upstream: {url: "http://127.0.0.1:9002/v1", model: "m"}}
      v3: {upstream: {url: "http://127.0.0.1:9003/v1", model: "m"}}
    routing:
      strategy: performance
      weights: {v1: 100, v2: 100, v3: 50}
      performance: {objective: errors, min_samples: 5, min_share: 0.1}
"""


async def settle(gw: App) -> None:
    await gw.parts.sync.flush()
    await gw.parts.sync.refresh()
    gw.parts.recomputer.recompute()


async def test_stats_report_per_version_numbers_and_weights() -> None:
    gw, fake = faked(GOOD + "admin: {token_env: ADMIN_TOKEN}\n")
    for _ in range(4):
        await send(gw, "POST", "/v1/chat/completions", json={"model": "chat@v1"})
    fake.answer = lambda url: FakeResponse(503, [(b"content-type", b"application/json")], [b"{}"])
    await send(gw, "POST", "/v1/chat/completions", json={"model": "chat@v1"})
    fake.answer = lambda url: FakeResponse(400, [(b"content-type", b"application/json")], [b"{}"])
    await send(gw, "POST", "/v1/chat/completions", json={"model": "chat@v1"})
    await settle(gw)
    resp = await send(gw, "GET", "/admin/models/chat/stats", headers=AUTH)
    assert resp.status_code == 200
    body = resp.json()
    assert body["model"] == "chat" and set(body["versions"]) == {"v1", "v2"}
    v1 = body["versions"]["v1"]
    assert v1["samples"] == 5 and v1["requests"] == 6  # the client's 400 judges nothing
    assert v1["error_rate"] == pytest.approx(0.2) and v1["errors"][
        "upstream_error"
    ] == pytest.approx(0.2)
    assert v1["client_outcomes"]["client_error"] == 1
    assert v1["weight"] == 0.9 and body["versions"]["v2"]["weight"] == pytest.approx(0.1)
    assert v1["requests_per_s"] > 0 and v1["tokens_per_s"] > 0
    for key in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p95_ms"):
        assert v1[key] is not None and v1[key] >= 0
    assert (
        body["versions"]["v2"]["samples"] == 0 and body["versions"]["v2"]["latency_p50_ms"] is None
    )
    assert body["store"]["backend"] == "memory" and body["store"]["up"] is True


async def test_unknown_model_is_404_and_the_token_is_required() -> None:
    gw, _ = faked(GOOD + "admin: {token_env: ADMIN_TOKEN}\n")
    resp = await send(gw, "GET", "/admin/models/nope/stats", headers=AUTH)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
    assert (await send(gw, "GET", "/admin/models/chat/stats")).status_code == 401


async def test_performance_weights_follow_errors_and_reach_prometheus() -> None:
    gw, fake = faked(PERF)
    fake.answer = lambda url: (
        FakeResponse(502, [(b"content-type", b"application/json")], [b"{}"])
        if ":9003" in url
        else FakeResponse(200, [(b"content-type", b"application/json")], [b"{}"])
    )
    for version in ("v1", "v2", "v3") * 20:
        await send(gw, "POST", "/v1/chat/completions", json={"model": f"chat@{version}"})
    await settle(gw)
    body = (await send(gw, "GET", "/admin/models/chat/stats", headers=AUTH)).json()
    weights = {v: body["versions"][v]["weight"] for v in ("v1", "v2", "v3")}
    assert weights["v3"] == pytest.approx(0.1) and weights["v1"] == pytest.approx(0.45)
    assert body["versions"]["v3"]["routing"]["trusted"] is True
    text = (await send(gw, "GET", "/metrics")).text
    assert 'gateway_routing_weight{model="chat",version="v3"} 0.1' in text
    assert 'gateway_version_error_rate{class="all",model="chat",version="v3"} 1.0' in text
    assert 'gateway_version_samples{model="chat",version="v1"} 20.0' in text
    assert 'gateway_store_up{backend="memory"} 1.0' in text
    assert "gateway_store_snapshot_age_seconds" in text and "gateway_redis_up" not in text
    assert 'gateway_version_latency_seconds{model="chat",q="0.99",version="v1"}' in text


async def test_stats_stay_valid_json_when_every_version_fails() -> None:
    gw, fake = faked(PERF)
    fake.answer = lambda url: FakeResponse(502, [(b"content-type", b"application/json")], [b"{}"])
    for version in ("v1", "v2", "v3") * 10:
        await send(gw, "POST", "/v1/chat/completions", json={"model": f"chat@{version}"})
    await settle(gw)
    resp = await send(gw, "GET", "/admin/models/chat/stats", headers=AUTH)
    assert resp.status_code == 200
    v1 = resp.json()["versions"]["v1"]
    assert v1["error_rate"] == 1.0 and v1["latency_p50_ms"] is None
    assert v1["routing"]["trusted"] is True and v1["routing"]["fast_ms"] is None


async def test_key_usage_reports_requests_and_tokens_per_key_over_the_window() -> None:
    team, team_digest = new_key()
    tiny, tiny_digest = new_key()
    auth = (
        "auth:\n  keys:\n"
        f"    - {{id: team-a, sha256: {team_digest}}}\n"
        f"    - {{id: tiny, sha256: {tiny_digest}, rate_limit: {{requests_per_minute: 1}}}}\n"
    )
    gw, _ = faked(GOOD + "admin: {token_env: ADMIN_TOKEN}\n" + auth)
    for _ in range(3):
        await send(gw, "POST", "/v1/chat/completions", json={"model": "chat@v1"},
                   headers={"authorization": f"Bearer {team}"})  # fmt: skip
    for _ in range(2):  # the second is over the key's limit: the gateway's own 429
        await send(gw, "POST", "/v1/chat/completions", json={"model": "chat@v1"},
                   headers={"authorization": f"Bearer {tiny}"})  # fmt: skip
    await send(gw, "POST", "/v1/chat/completions", json={"model": "chat"})  # no key: 401
    await gw.parts.sync.flush()
    resp = await send(gw, "GET", "/admin/keys/usage", headers=AUTH)
    assert resp.status_code == 200
    body = resp.json()
    assert body["window_s"] == 60 and body["source"] == "memory"
    keys = body["keys"]
    assert set(keys) == {"team-a", "tiny", "anonymous"}
    assert keys["team-a"] == {
        "requests": 3, "prompt_tokens": 12, "completion_tokens": 6, "outcomes": {"success": 3}
    }  # fmt: skip
    assert keys["tiny"]["requests"] == 2
    assert keys["tiny"]["outcomes"] == {"success": 1, "throttled": 1}
    assert keys["anonymous"]["outcomes"] == {"client_error": 1}
    scrape = (await send(gw, "GET", "/metrics")).text
    # a request-count limit is charged on the head, before the body names the model
    line = 'gateway_requests_total{key="tiny",model="other",outcome="throttled",version="none"} 1.0'
    assert line in scrape
    assert (
        'gateway_tokens_total{key="team-a",kind="prompt",model="chat",version="v1"} 12.0' in scrape
    )
    assert (await send(gw, "GET", "/admin/keys/usage")).status_code == 401
