"""CORS (off by default; preflights answered before routing, auth or any upstream; allowed
origins marked on every answer) and the self-contained `/docs` page."""

from __future__ import annotations

import re
from random import Random

import httpx
import pytest

from gateway.app import App, create_app
from gateway.auth import new_key
from gateway.config import parse_config
from gateway.errors import ConfigError
from tests.fakes import FakeTransport
from tests.samples import ENV, GOOD

SITE = "https://app.example.com"
CORS = GOOD + f'cors: {{allow_origins: ["{SITE}"], max_age_s: 120}}\n'
PREFLIGHT = {"origin": SITE, "access-control-request-method": "POST",
             "access-control-request-headers": "authorization, content-type"}  # fmt: skip


def app(text: str) -> tuple[App, FakeTransport]:
    gw = create_app(parse_config(text, ENV), ENV, rng=Random(1))
    fake = FakeTransport()
    gw.parts.forwarder.transport = fake
    return gw, fake


async def call(gw: App, method: str, path: str, **kw: object) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as c:
        return await c.request(method, path, **kw)  # type: ignore[arg-type]


async def test_cors_is_off_by_default() -> None:
    gw, _ = app(GOOD)
    assert gw.current.runtime.cors is None
    resp = await call(gw, "OPTIONS", "/v1/chat/completions", headers=PREFLIGHT)
    assert resp.status_code == 405
    resp = await call(gw, "POST", "/v1/chat/completions", json={"model": "chat"},
                      headers={"origin": SITE})  # fmt: skip
    assert resp.status_code == 200 and "access-control-allow-origin" not in resp.headers


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/v1/models"])
async def test_preflight_is_answered_without_auth_or_upstream(path: str) -> None:
    _, digest = new_key()
    gw, fake = app(CORS + f"auth: {{keys: [{{id: a, sha256: {digest}}}]}}\n")
    resp = await call(gw, "OPTIONS", path, headers=PREFLIGHT)
    assert resp.status_code == 204 and not fake.calls
    h = resp.headers
    assert h["access-control-allow-origin"] == SITE and h["vary"] == "origin"
    assert "POST" in h["access-control-allow-methods"]
    assert "authorization" in h["access-control-allow-headers"]
    assert h["access-control-max-age"] == "120"


async def test_preflight_from_another_origin_is_refused_in_openai_shape() -> None:
    gw, fake = app(CORS)
    headers = {**PREFLIGHT, "origin": "https://evil.example"}
    resp = await call(gw, "OPTIONS", "/v1/chat/completions", headers=headers)
    assert resp.status_code == 403 and not fake.calls
    assert resp.json()["error"]["code"] == "cors_origin_not_allowed"
    assert "access-control-allow-origin" not in resp.headers


async def test_actual_answers_carry_the_allowed_origin() -> None:
    gw, _ = app(CORS)
    ok = await call(gw, "POST", "/v1/chat/completions", json={"model": "chat"},
                    headers={"origin": SITE})  # fmt: skip
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == SITE
    assert "x-request-id" in ok.headers["access-control-expose-headers"]
    failed = await call(gw, "POST", "/v1/chat/completions", json={"model": "nope"},
                        headers={"origin": SITE})  # fmt: skip
    assert failed.status_code == 404 and failed.headers["access-control-allow-origin"] == SITE
    models = await call(gw, "GET", "/v1/models", headers={"origin": SITE})
    assert models.headers["access-control-allow-origin"] == SITE
    other = await call(gw, "GET", "/v1/models", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


async def test_any_origin() -> None:
    gw, _ = app(GOOD + 'cors: {allow_origins: ["*"]}\n')
    resp = await call(gw, "GET", "/v1/models", headers={"origin": "http://localhost:3000"})
    assert resp.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("origin", ["app.example.com", "https://app.example.com/", "ftp://x"])
def test_bad_origins_are_config_errors(origin: str) -> None:
    with pytest.raises(ConfigError, match="origin"):
        parse_config(GOOD + f'cors: {{allow_origins: ["{origin}"]}}\n', ENV)


async def test_docs_page_is_self_contained() -> None:
    gw, _ = app(GOOD)
    resp = await call(gw, "GET", "/docs")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", resp.text)  # no CDN asset
    assert "/openapi.json" in resp.text
    spec = (await call(gw, "GET", "/openapi.json")).json()
    assert "/docs" not in spec["paths"] and "/v1/chat/completions" in spec["paths"]
