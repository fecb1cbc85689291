"""Issue 14 §9: `/metrics` on the client port needed nothing and listed every model and version,
including those hidden from every key. `metrics.require` now asks for a scraping key or the
admin token; the admin surface serves the same text at `/admin/metrics`."""

from __future__ import annotations

import hashlib
from random import Random

import httpx
import pytest

from gateway.app import App, create_app
from gateway.config import parse_config
from tests.samples import problems

TOKEN = "adm-" + "m" * 28
TENANT = "tenant-key-" + "t" * 20
SCRAPER = "scraper-key-" + "s" * 20
ENV = {"ADMIN_TOKEN": TOKEN}


def config(metrics: str = "") -> str:
    def key(kid: str, secret: str, models: str) -> str:
        digest = hashlib.sha256(secret.encode()).hexdigest()
        return f"    - {{id: {kid}, sha256: {digest}, models: [{models}]}}\n"

    return (
        "admin: {token_env: ADMIN_TOKEN}\n"
        "auth:\n  keys:\n"
        + key("tenant", TENANT, "chat")
        + key("prometheus", SCRAPER, "chat")
        + (f"metrics: {metrics}\n" if metrics else "")
        + "models:\n"
        "  chat: {versions: {v1: {upstream: {url: 'http://127.0.0.1:9001/v1', model: m}}}}\n"
        "  secret: {versions: {internal-v9: {upstream: {url: 'http://127.0.0.1:9002/v1', "
        "model: m}}}}\n"
    )


def app(metrics: str = "") -> App:
    return create_app(parse_config(config(metrics), ENV), ENV, rng=Random(0))


async def scrape(gw: App, auth: str | None, path: str = "/metrics") -> httpx.Response:
    headers = {} if auth is None else {"authorization": f"Bearer {auth}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as c:
        return await c.get(path, headers=headers)


async def test_default_stays_open() -> None:
    resp = await scrape(app(), None)
    assert resp.status_code == 200 and 'model="secret"' in resp.text


async def test_require_key_admits_only_the_listed_keys() -> None:
    gw = app("{require: key, key_ids: [prometheus]}")
    for auth, status in ((None, 401), ("wrong", 401), (TENANT, 403), (TOKEN, 401)):
        resp = await scrape(gw, auth)
        assert resp.status_code == status, auth
        assert "secret" not in resp.text and "internal-v9" not in resp.text
        assert {"message", "type", "code"} <= set(resp.json()["error"])
    resp = await scrape(gw, SCRAPER)
    assert resp.status_code == 200 and 'version="internal-v9"' in resp.text


async def test_require_admin_takes_the_admin_token_and_counts_wrong_ones() -> None:
    gw = app("{require: admin}")
    for auth in (None, SCRAPER, TENANT):
        resp = await scrape(gw, auth)
        assert resp.status_code == 401 and "internal-v9" not in resp.text
    assert (await scrape(gw, TOKEN)).status_code == 200
    text = gw.parts.metrics.scrape().decode()
    assert 'gateway_admin_auth_failures_total{result="rejected"} 2' in text  # the two keys


async def test_admin_surface_serves_metrics_behind_the_token() -> None:
    gw = app()
    assert (await scrape(gw, None, "/admin/metrics")).status_code == 401
    resp = await scrape(gw, TOKEN, "/admin/metrics")
    assert resp.status_code == 200 and "gateway_requests_total" in resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ("{require: key}", "metrics.key_ids: `require: key` needs the ids"),
        ("{require: key, key_ids: [nobody]}", "metrics.key_ids.0: unknown key id 'nobody'"),
        ("{require: everyone}", "metrics.require"),
    ],
)
def test_metrics_access_is_checked(metrics: str, expected: str) -> None:
    assert any(p.startswith(expected) for p in problems(config(metrics), ENV)), expected


def test_require_admin_needs_an_admin_token() -> None:
    text = config("{require: admin}").replace("admin: {token_env: ADMIN_TOKEN}\n", "")
    found = problems(text, ENV)
    assert any(p.startswith("metrics.require: `admin` needs admin.token_env") for p in found)
