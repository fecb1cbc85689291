"""Every error the gateway itself answers, on every kind of route, is OpenAI's error object with
exactly `message`, `type`, `param` and `code` (docs/api.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.inproc import AUTH, faked, send
from tests.samples import GOOD

KEYS = {"message", "type", "param", "code"}
CASES: list[tuple[str, str, dict[str, Any], int, str | None]] = [
    ("POST", "/v1/chat/completions", {"content": b"{not json"}, 400, None),
    ("POST", "/v1/chat/completions", {"json": {"messages": []}}, 400, "model"),
    ("POST", "/v1/chat/completions", {"json": {"model": "nope"}}, 404, None),
    ("GET", "/v1/chat/completions", {}, 405, None),
    ("GET", "/no/such/path", {}, 404, None),
    ("GET", "/admin/models", {}, 401, None),
    (
        "PUT",
        "/admin/models/chat/weights",
        {"json": {"weights": {"v1": 1e308}}, "auth": 1},
        422,
        None,
    ),
    ("GET", "/admin/registry", {"auth": 1}, 404, None),
]


@pytest.mark.parametrize(("method", "path", "kw", "status", "param"), CASES)
async def test_every_error_is_the_openai_error_object(
    method: str, path: str, kw: dict[str, Any], status: int, param: str | None
) -> None:
    gw, _ = faked(GOOD + "admin: {token_env: ADMIN_TOKEN}\n")
    if kw.pop("auth", None):
        kw["headers"] = AUTH
    resp = await send(gw, method, path, **kw)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == KEYS
    assert error["param"] == param


async def test_framework_validation_errors_name_the_field() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from gateway.web.errors import install_error_handlers

    web = FastAPI()
    install_error_handlers(web)

    @web.get("/items")
    async def items(limit: int) -> dict[str, int]:
        return {"limit": limit}

    resp = TestClient(web).get("/items", params={"limit": "many"})
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert set(error) == KEYS and error["param"] == "limit" and "detail" not in resp.json()
