"""Admin API: absent without a token; every admin route demands the exact bearer token."""

from __future__ import annotations

import logging
from random import Random

import httpx
import pytest

from gateway.app import App, create_app
from gateway.config import parse_config
from gateway.web.admin_auth import MAX_ADDRESSES, FailureThrottle
from tests.inproc import ENV, TOKEN, WITH_ADMIN
from tests.samples import GOOD, problems
from tests.support import ManualClock

BAD_AUTH = [
    None,
    "",
    "Bearer",
    f"Bearer {TOKEN}x",
    f"bearer {TOKEN}",
    TOKEN,
    f"Basic {TOKEN}",
    "Bearer ' OR '1'='1",
    "Bearer " + "a" * 100_000,
]


def app(text: str, env: dict[str, str]) -> App:
    return create_app(parse_config(text, env), env, rng=Random(0))


def admin_operations(gw: App) -> list[tuple[str, str]]:
    """Every admin operation in the published OpenAPI schema, as (method, path)."""
    paths = gw.web.openapi()["paths"]
    return [(m.upper(), p) for p, ops in paths.items() if p.startswith("/admin") for m in ops]


async def request(gw: App, method: str, path: str, auth: str | None) -> httpx.Response:
    headers = {} if auth is None else {"authorization": auth}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as c:
        return await c.request(method, path, headers=headers)


def test_no_token_configured_means_no_admin_api() -> None:
    assert admin_operations(app(GOOD, ENV)) == []
    assert admin_operations(app(WITH_ADMIN, {**ENV, "ADMIN_TOKEN": ""})) == []


UNTHROTTLED = GOOD + "admin: {token_env: ADMIN_TOKEN, max_failures_per_minute: 10000}\n"
NEEDS_NOTHING = {"/admin/logout"}  # ends the session its cookie names, if any


@pytest.mark.parametrize("auth", BAD_AUTH, ids=range(len(BAD_AUTH)))
async def test_every_admin_route_rejects_bad_tokens(auth: str | None) -> None:
    gw = app(UNTHROTTLED, ENV)
    operations = admin_operations(gw)
    assert operations, "admin routes should be mounted"
    assert {p for _, p in operations} >= {"/admin/metrics", *NEEDS_NOTHING}
    for method, path in operations:
        if path in NEEDS_NOTHING:
            continue
        url = path.replace("{model}", "chat").replace("{action}", "pause")
        resp = await request(gw, method, url, auth)
        assert resp.status_code == 401, (method, path)
        assert resp.json()["error"]["code"] == "invalid_admin_token"
        assert not auth or auth not in resp.text


async def test_admin_models_with_the_token() -> None:
    resp = await request(app(WITH_ADMIN, ENV), "GET", "/admin/models", f"Bearer {TOKEN}")
    assert resp.status_code == 200
    assert resp.json()["data"][0]["versions"][0]["weight"] == 0.9


def test_admin_listener_config_needs_a_token_and_its_own_port() -> None:
    found = problems(GOOD + "admin: {listen: {port: 8080}}\n")
    assert any(p.startswith("admin.listen: a separate admin listener needs") for p in found)
    assert any(
        p.startswith("admin.listen.port: must differ from listen.port (8080)") for p in found
    )


async def test_with_admin_listen_the_client_app_has_no_admin_routes() -> None:
    gw = app(GOOD + "admin: {token_env: ADMIN_TOKEN, listen: {port: 9099}}\n", ENV)
    assert admin_operations(gw) == []
    for path in ("/admin/models", "/admin/ui", "/login"):
        resp = await request(gw, "GET", path, f"Bearer {TOKEN}")
        assert resp.status_code == 404, path


THROTTLED = GOOD + "admin: {token_env: ADMIN_TOKEN, max_failures_per_minute: 3}\n"


async def test_wrong_admin_tokens_are_logged_and_throttled_per_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 14 §8: 1,123 wrong guesses in 3 s, all 401, not one log line. Now each wrong token
    is logged (address and route, never the guess), counted, and after
    `admin.max_failures_per_minute` the address gets 429 with Retry-After — the right token too,
    so a late right guess cannot be confirmed; the status-page login counts the same."""
    gw = app(THROTTLED, ENV)
    guesses = [f"Bearer guess-{i}-{TOKEN[:6]}" for i in range(3)]
    with caplog.at_level(logging.INFO, logger="gateway.admin"):
        assert (await request(gw, "GET", "/admin/models", guesses[0])).status_code == 401
        assert (await request(gw, "POST", "/admin/reload", guesses[1])).status_code == 401
        assert (await request(gw, "POST", "/admin/session", guesses[2])).status_code == 401
        refused = await request(gw, "GET", "/admin/models", f"Bearer {TOKEN}")
        again = await request(gw, "GET", "/admin/models", guesses[0])
    assert refused.status_code == again.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["error"]["type"] == "rate_limit_error"
    fields = [getattr(r, "fields", {}) for r in caplog.records]
    failed = [f for f in fields if f.get("event") == "admin_auth_failed"]
    assert [f["route"] for f in failed] == ["/admin/models", "/admin/reload", "/admin/session"]
    assert all(f["source"] == "127.0.0.1" for f in failed)
    assert [f["event"] for f in fields].count("admin_auth_throttled") == 1
    assert not any(g.split()[1] in r.getMessage() + str(f) for g in guesses
                   for r, f in zip(caplog.records, fields, strict=True))  # fmt: skip
    text = gw.parts.metrics.scrape().decode()
    assert 'gateway_admin_auth_failures_total{result="rejected"} 3' in text
    assert 'gateway_admin_auth_failures_total{result="throttled"} 2' in text


async def test_missing_tokens_and_stale_sessions_are_not_counted() -> None:
    """Nothing guessed, nothing counted: a status page left open after sign-out keeps polling
    with its stale cookie and must not lock its operator out."""
    gw = app(THROTTLED, ENV)
    for _ in range(10):
        assert (await request(gw, "GET", "/admin/models", None)).status_code == 401
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gw), base_url="http://gw"
        ) as c:
            stale = await c.get("/admin/models", headers={"cookie": "gw_admin=stale"})
        assert stale.status_code == 401
    assert (await request(gw, "GET", "/admin/models", f"Bearer {TOKEN}")).status_code == 200


def test_throttle_windows_end_and_the_table_is_bounded() -> None:
    clock = ManualClock()
    throttle = FailureThrottle(lambda: 2, clock)
    assert not throttle.failed("a") and throttle.failed("a")  # the second reaches the limit
    assert throttle.retry_after("a") == pytest.approx(60.0)
    clock.now += 30
    assert throttle.retry_after("a") == pytest.approx(30.0) and throttle.retry_after("b") == 0
    clock.now += 30
    assert throttle.retry_after("a") == 0  # a new minute
    assert not throttle.failed("a")
    for i in range(MAX_ADDRESSES + 10):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._failures) == MAX_ADDRESSES
