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
