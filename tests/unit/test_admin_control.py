"""Admin control routes in process (memory control store): weights, aliases, canary; and the
layering of overrides over the file config, kept across a hot reload."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import httpx
import pytest

from gateway.cli.admin import cmd_weights_set
from gateway.config import ConfigError, parse_config
from gateway.runtime.overrides import layered
from gateway.runtime.reload import Reloader
from tests.inproc import AUTH, CANARY, ENV, WITH_ADMIN, admin_app, call


async def test_weights_are_validated_applied_and_cas_guarded() -> None:
    gw = admin_app()
    bad = await call(gw, "PUT", "/admin/models/chat/weights", {"weights": {"v1": -1, "v9": 1}})
    assert bad.status_code == 422
    problems = bad.json()["problems"]
    assert any("v9" in p for p in problems) and any("finite number" in p for p in problems)
    zero = await call(gw, "PUT", "/admin/models/chat/weights", {"weights": {"v1": 0, "v2": 0}})
    assert zero.status_code == 422
    ok = await call(gw, "PUT", "/admin/models/chat/weights", {"weights": {"v1": 20, "v2": 80}})
    assert ok.status_code == 200 and ok.json()["generation"] == 1
    assert gw.current.runtime.registry.models["chat"].policy.weights() == {"v1": 0.2, "v2": 0.8}
    stale = {"weights": {"v1": 50, "v2": 50}, "generation": 0}
    assert (await call(gw, "PUT", "/admin/models/chat/weights", stale)).status_code == 409
    missing = await call(gw, "PUT", "/admin/models/nope/weights", {"weights": {"v1": 1}})
    assert missing.status_code == 404
    assert (await call(gw, "PUT", "/admin/models/chat/weights", {}, auth=False)).status_code == 401


async def test_two_concurrent_writers_one_wins() -> None:
    gw = admin_app()
    bodies = [{"weights": {"v1": w, "v2": 100 - w}, "generation": 0} for w in (30, 70)]
    codes = sorted(
        r.status_code
        for r in await asyncio.gather(
            *(call(gw, "PUT", "/admin/models/chat/weights", b) for b in bodies)
        )
    )
    assert codes == [200, 409]


async def test_alias_set_and_validation() -> None:
    gw = admin_app()
    ok = await call(gw, "PUT", "/admin/models/chat/aliases/stable", {"version": "v2"})
    assert ok.status_code == 200
    assert gw.current.runtime.registry.resolve("chat@stable", None).pinned.id == "v2"  # type: ignore[union-attr]
    for alias, body in [("stable", {"version": "v9"}), ("v1", {"version": "v2"})]:
        resp = await call(gw, "PUT", f"/admin/models/chat/aliases/{alias}", body)
        assert resp.status_code == 422


async def test_canary_routes() -> None:
    gw = admin_app(CANARY + "admin: {token_env: ADMIN_TOKEN}\n")
    assert (await call(gw, "GET", "/admin/models/nope/canary")).status_code == 404
    await gw.parts.control.controller.tick()  # starts the canary
    status = (await call(gw, "GET", "/admin/models/chat/canary")).json()
    assert (status["state"], status["step"], status["weight"], status["history"]) == (
        "progressing", 0, 10.0, [],
    )  # fmt: skip
    paused = await call(gw, "POST", "/admin/models/chat/canary/pause")
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    again = await call(gw, "POST", "/admin/models/chat/canary/pause")
    assert again.status_code == 409
    rolled = (await call(gw, "POST", "/admin/models/chat/canary/rollback")).json()
    assert rolled["weight"] == 0.0
    assert [(h["action"], h["rule"]) for h in rolled["history"]] == [
        ("pause", "manual"), ("rollback", "manual"),
    ]  # fmt: skip
    plain = admin_app()
    assert (await call(plain, "GET", "/admin/models/chat/canary")).status_code == 409


def test_layering_and_reload_keep_overrides(tmp_path: Path) -> None:
    cfg = parse_config(WITH_ADMIN, ENV)
    routed, weights = layered(cfg, {"chat": {"weights": {"v2": 1}, "aliases": {"beta": "v2"}}})
    assert routed.models["chat"].routing.weights == {"v2": 1.0}
    assert routed.models["chat"].aliases == {"stable": "v1", "canary": "v2", "beta": "v2"}
    assert weights == {} and cfg.models["chat"].routing.weights == {"v1": 90, "v2": 10}
    path = tmp_path / "gw.yaml"
    path.write_text(WITH_ADMIN)
    gw = admin_app()
    asyncio.run(call(gw, "PUT", "/admin/models/chat/weights", {"weights": {"v1": 1, "v2": 3}}))
    path.write_text(WITH_ADMIN.replace("run-381", "run-382"))
    assert Reloader(gw.current, str(path), ENV).reload().ok
    assert gw.current.runtime.registry.models["chat"].policy.weights() == {"v1": 0.25, "v2": 0.75}
    assert gw.current.runtime.registry.models["chat"].versions["v1"].metadata["run_id"] == "run-382"


@pytest.mark.parametrize("raw", ["1e308", "Infinity", "-Infinity", "NaN", "1000001", "1e6 "])
async def test_weights_must_be_finite_and_bounded(raw: str) -> None:
    """Issue 14 §10: a weight of 1e308 (or inf, nan, above 1e6) is refused with 422 and the
    OpenAI error shape; nothing is applied."""
    gw = admin_app()
    before = gw.current.runtime.registry.models["chat"].policy.weights()
    body = '{"weights": {"v1": ' + raw + ', "v2": 1}}'
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as c:
        resp = await c.put("/admin/models/chat/weights", content=body, headers=AUTH)
    if raw == "1e6 ":  # the bound itself is allowed
        assert resp.status_code == 200, resp.text
        return
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and "between 0 and 1000000" in error["message"]
    assert gw.current.runtime.registry.models["chat"].policy.weights() == before


@pytest.mark.parametrize("value", ["1.0e+308", ".inf", ".nan", "2000000"])
def test_config_weights_must_be_finite_and_bounded(value: str) -> None:
    text = WITH_ADMIN.replace("weights: {v1: 90, v2: 10}", f"weights: {{v1: {value}, v2: 10}}")
    assert text != WITH_ADMIN
    with pytest.raises(ConfigError, match="between 0 and 1000000"):
        parse_config(text, ENV)


@pytest.mark.parametrize("pair", ["v1=inf", "v1=nan", "v1=1e308", "v1=-1"])
def test_cli_refuses_unbounded_weights_before_calling(pair: str) -> None:
    args = argparse.Namespace(model="chat", pairs=[pair, "v2=1"])
    assert cmd_weights_set(args) == 2  # no --url: it never got as far as the network
