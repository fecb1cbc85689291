"""Admin API: absent without a token; every admin route demands the exact bearer token."""

from __future__ import annotations

from random import Random

import httpx
import pytest

from gateway.app import App, create_app
from gateway.config import parse_config
from tests.samples import GOOD, problems

TOKEN = "adm-" + "x" * 28
ENV = {"V2_KEY": "secret", "ADMIN_TOKEN": TOKEN}
WITH_ADMIN = GOOD + "admin: {token_env: ADMIN_TOKEN}\n"
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


@pytest.mark.parametrize("auth", BAD_AUTH, ids=range(len(BAD_AUTH)))
async def test_every_admin_route_rejects_bad_tokens(auth: str | None) -> None:
    gw = app(WITH_ADMIN, ENV)
    operations = admin_operations(gw)
    assert operations, "admin routes should be mounted"
    for method, path in operations:
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
