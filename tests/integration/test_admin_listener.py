"""`admin.listen`: the admin API, status page and login form answer only on their own port, and
there only with the admin token; the client port has none of them and the admin port serves no
data plane."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Gateway, Mock, free_port, gateway, secret, version

ADMIN_TOKEN = secret("adm-listener-4f1c9e2a7b")
CLIENT_KEY = secret("client-listener-8d3b6a1e")


@pytest.fixture(scope="module")
def admin_gw(mocks: tuple[Mock, Mock], workdir: Path) -> Iterator[tuple[Gateway, str]]:
    port = free_port()
    config = {
        "admin": {"token_env": "LISTENER_ADMIN_TOKEN", "listen": {"port": port}},
        "auth": {
            "keys": [{"id": "app", "sha256": hashlib.sha256(CLIENT_KEY.encode()).hexdigest()}]
        },
        "models": {"chat": {"versions": {"v1": version(mocks[0].url, mocks[0].model)}}},
    }
    with gateway(config, workdir, {"LISTENER_ADMIN_TOKEN": ADMIN_TOKEN}) as gw:
        yield gw, f"http://127.0.0.1:{port}"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_admin_answers_on_its_own_port_with_the_token_only(admin_gw: tuple[Gateway, str]) -> None:
    _, admin = admin_gw
    ok = httpx.get(admin + "/admin/models", headers=bearer(ADMIN_TOKEN))
    assert ok.status_code == 200 and "chat" in ok.text
    for headers in ({}, bearer(CLIENT_KEY), bearer(ADMIN_TOKEN + "x")):
        resp = httpx.get(admin + "/admin/models", headers=headers)
        assert resp.status_code == 401 and ADMIN_TOKEN not in resp.text
    assert httpx.get(admin + "/login").status_code == 200
    schema = httpx.get(admin + "/admin/openapi.json").json()
    assert "/admin/models" in schema["paths"] and "/v1/chat/completions" not in schema["paths"]


def test_client_port_has_no_admin_and_admin_port_no_data_plane(
    admin_gw: tuple[Gateway, str],
) -> None:
    gw, admin = admin_gw
    for path in ("/admin/models", "/admin/ui", "/login"):
        assert httpx.get(gw.base + path, headers=bearer(ADMIN_TOKEN)).status_code == 404, path
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    served = httpx.post(gw.base + "/v1/chat/completions", json=body, headers=bearer(CLIENT_KEY))
    assert served.status_code == 200
    refused = httpx.post(admin + "/v1/chat/completions", json=body, headers=bearer(CLIENT_KEY))
    assert refused.status_code in (404, 405)
    assert httpx.get(admin + "/metrics").status_code == 404


def test_admin_listener_throttles_wrong_tokens_and_serves_sessions_and_metrics(
    mocks: tuple[Mock, Mock], workdir: Path
) -> None:
    """Issue 14 §7–9 on a real admin listener: wrong tokens logged (never the guess) and
    throttled per address, sessions that end at sign-out, `/admin/metrics` behind the token,
    and the client port's `/metrics` closed by `metrics.require: admin`."""
    port = free_port()
    config = {
        "admin": {
            "token_env": "LISTENER_ADMIN_TOKEN",
            "listen": {"port": port},
            "max_failures_per_minute": 3,
        },
        "metrics": {"require": "admin"},
        "models": {"chat": {"versions": {"v1": version(mocks[0].url, mocks[0].model)}}},
    }
    guess = secret("adm-guess-6c2e8f1a3d")
    with gateway(config, workdir, {"LISTENER_ADMIN_TOKEN": ADMIN_TOKEN}) as gw:
        admin = f"http://127.0.0.1:{port}"
        assert httpx.get(gw.base + "/metrics").status_code == 401
        scraped = httpx.get(admin + "/admin/metrics", headers=bearer(ADMIN_TOKEN))
        assert scraped.status_code == 200 and "gateway_admin_auth_failures_total" in scraped.text
        signed_in = httpx.post(admin + "/admin/session", headers=bearer(ADMIN_TOKEN))
        assert signed_in.status_code == 204
        jar = {"gw_admin": signed_in.cookies["gw_admin"]}
        assert httpx.get(admin + "/admin/models", cookies=jar).status_code == 200
        assert httpx.get(admin + "/admin/logout", cookies=jar).status_code == 303
        assert httpx.get(admin + "/admin/models", cookies=jar).status_code == 401
        codes = [
            httpx.get(admin + "/admin/models", headers=bearer(guess)).status_code for _ in range(4)
        ]
        assert codes == [401, 401, 401, 429]
        late = httpx.get(admin + "/admin/models", headers=bearer(ADMIN_TOKEN))
        assert late.status_code == 429 and 1 <= int(late.headers["retry-after"]) <= 60
        log = gw.log()
    assert log.count('"admin_auth_failed"') == 3 and log.count('"admin_auth_throttled"') == 1
    assert guess not in log and ADMIN_TOKEN not in log
