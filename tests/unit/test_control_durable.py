"""Issue 13, the operational half, in process (memory control store): overrides with provenance,
clear and expiry; reload notes; revert and re-run of rollouts; holding canaries after the shared
control state was lost."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.app import App
from gateway.canary.state import CanaryState
from gateway.control.store import MemoryControl
from gateway.runtime.reload import Reloader
from tests.inproc import CANARY, ENV, WITH_ADMIN, admin_app, call

WITH_CANARY = CANARY + "admin: {token_env: ADMIN_TOKEN}\n"


def routed(gw: App, name: str = "chat") -> dict[str, float]:
    weights = gw.current.runtime.registry.models[name].policy.weights()
    return {v: w for v, w in weights.items() if w > 0}


def stable(gw: App) -> str:
    target = gw.current.runtime.registry.resolve("chat@stable", None).pinned
    assert target is not None
    return target.id


async def test_an_override_shows_its_source_time_expiry_and_the_yaml_it_hides() -> None:
    gw = admin_app()
    gw.parts.control.plane.wall = lambda: 1000.0
    body = {"weights": {"v1": 20, "v2": 80}, "ttl_s": 60, "source": "cli:ana"}
    assert (await call(gw, "PUT", "/admin/models/chat/weights", body)).status_code == 200
    alias = await call(gw, "PUT", "/admin/models/chat/aliases/stable", {"version": "v2"})
    assert alias.status_code == 200
    shown = (await call(gw, "GET", "/admin/models/chat/overrides")).json()
    weights = shown["weights"]
    assert (weights["source"], weights["at"], weights["expires_at"]) == ("cli:ana", 1000.0, 1060.0)
    assert weights["value"] == {"v1": 20.0, "v2": 80.0}
    assert weights["yaml"] == {"v1": 90, "v2": 10}
    assert shown["aliases"]["stable"] == {
        "source": "admin", "at": 1000.0, "expires_at": None, "yaml_when_set": "v1",
        "value": "v2", "yaml": "v1",
    }  # fmt: skip
    bad = {"weights": {"v1": 1}, "ttl_s": -5, "source": "no spaces allowed"}
    problems = (await call(gw, "PUT", "/admin/models/chat/weights", bad)).json()["problems"]
    assert any("ttl_s" in p for p in problems) and any("source" in p for p in problems)


async def test_clear_puts_the_yaml_back_and_an_unknown_override_is_404() -> None:
    gw = admin_app()
    await call(gw, "PUT", "/admin/models/chat/weights", {"weights": {"v1": 0, "v2": 1}})
    await call(gw, "PUT", "/admin/models/chat/aliases/stable", {"version": "v2"})
    assert routed(gw) == {"v2": 1.0} and stable(gw) == "v2"
    assert (await call(gw, "DELETE", "/admin/models/chat/weights")).status_code == 200
    assert (await call(gw, "DELETE", "/admin/models/chat/aliases/stable")).json()["version"] == "v1"
    assert routed(gw) == {"v1": 0.9, "v2": 0.1} and stable(gw) == "v1"
    missing = await call(gw, "DELETE", "/admin/models/chat/aliases/stable")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    stale = await call(gw, "DELETE", "/admin/models/chat/weights?generation=0")
    assert stale.status_code == 409


async def test_an_expired_override_is_cleared_by_the_control_plane() -> None:
    gw = admin_app()
    clock = [1000.0]
    plane = gw.parts.control.plane
    plane.wall = lambda: clock[0]
    body = {"weights": {"v1": 0, "v2": 1}, "ttl_s": 30}
    await call(gw, "PUT", "/admin/models/chat/weights", body)
    await plane.poll()
    assert routed(gw) == {"v2": 1.0}
    clock[0] = 1031.0
    await plane.poll()
    assert routed(gw) == {"v1": 0.9, "v2": 0.1}
    history = await plane.history("chat")
    assert history[-1]["action"] == "expire" and history[-1]["cleared"] == ["weights"]


async def test_reload_notes_an_override_that_hides_a_changed_yaml_value(tmp_path: Path) -> None:
    """Regression (issue 13): adding v3 with weight 50 reloaded silently while an override hid it."""
    path = tmp_path / "gw.yaml"
    path.write_text(WITH_ADMIN)
    gw = admin_app()
    await call(gw, "PUT", "/admin/models/chat/weights", {"weights": {"v1": 1, "v2": 1}})
    v3 = WITH_ADMIN.replace(
        "    routing:\n",
        '      v3:\n        upstream: {url: "http://127.0.0.1:9003/v1", model: "m3"}\n'
        "    routing:\n",
    ).replace("weights: {v1: 90, v2: 10}", "weights: {v1: 40, v2: 10, v3: 50}")
    path.write_text(v3)
    result = Reloader(gw.current, str(path), ENV).reload()
    assert result.ok
    assert any("routing.weights" in n and "weights clear --model chat" in n for n in result.notes)


async def test_after_a_promotion_the_alias_routes_and_revert_brings_the_baseline_back() -> None:
    """Regression (issue 13): `alias set stable v1` after a promotion left traffic on v2, and a
    promotion could not be undone."""
    gw = admin_app(WITH_CANARY)
    await gw.parts.control.controller.tick()
    await call(gw, "POST", "/admin/models/chat/canary/promote")
    assert routed(gw) == {"v2": 1.0} and stable(gw) == "v2"
    await call(gw, "PUT", "/admin/models/chat/aliases/stable", {"version": "v1"})
    assert routed(gw) == {"v1": 1.0} and stable(gw) == "v1"
    await call(gw, "PUT", "/admin/models/chat/aliases/stable", {"version": "v2"})
    assert routed(gw) == {"v2": 1.0}
    reverted = await call(gw, "POST", "/admin/models/chat/canary/revert")
    assert reverted.status_code == 200
    body = reverted.json()
    assert body["state"] == "rolled_back" and body["decision"]["action"] == "revert"
    assert routed(gw) == {"v1": 1.0} and stable(gw) == "v1"
    assert [h["action"] for h in body["history"]] == ["promote", "revert"]
    overrides = (await call(gw, "GET", "/admin/models/chat/overrides")).json()
    assert overrides["aliases"]["stable"]["source"] == "revert"
    again = await call(gw, "POST", "/admin/models/chat/canary/revert")
    assert again.status_code == 409


async def test_a_rolled_back_pair_runs_again_as_a_new_rollout_keeping_the_old_history() -> None:
    gw = admin_app(WITH_CANARY)
    await gw.parts.control.controller.tick()
    assert (await call(gw, "POST", "/admin/models/chat/canary/restart")).status_code == 409
    await call(gw, "POST", "/admin/models/chat/canary/rollback")
    assert routed(gw) == {"v1": 1.0}
    body = (await call(gw, "POST", "/admin/models/chat/canary/restart")).json()
    assert (body["state"], body["step"], body["weight"]) == ("progressing", 0, 10.0)
    assert body["rollout"] == "v1->v2#2"
    assert [h["action"] for h in body["history"]] == ["restart"]
    assert [h["action"] for h in body["earlier_history"]] == ["rollback"]
    assert routed(gw) == {"v1": 0.9, "v2": 0.1}


async def lost_state(gw: App) -> MemoryControl:
    store = gw.parts.control.plane.store
    assert isinstance(store, MemoryControl)
    store.lose()
    await gw.parts.control.plane.poll()
    return store


async def test_a_lost_state_holds_the_canary_paused_at_its_last_weight() -> None:
    gw = admin_app(WITH_CANARY)
    control = gw.parts.control
    await control.controller.tick()
    generation, value = await control.plane.store.get("chat")
    assert value is not None
    state = CanaryState.from_dict(value["canary"])
    value["canary"] = replace(state, step=1, generation=state.generation + 1).to_dict()
    assert await control.plane.store.cas("chat", generation, value)
    await control.plane.poll()
    assert routed(gw) == {"v1": 0.5, "v2": 0.5}
    await lost_state(gw)
    status = (await call(gw, "GET", "/admin/models/chat/canary")).json()
    assert (status["state"], status["pause_reason"], status["step"]) == ("paused", "state_lost", 1)
    assert status["weight"] == 50.0 and routed(gw) == {"v1": 0.5, "v2": 0.5}
    assert status["history"][-1]["action"] == "restore"
    assert status["state_lost"]["models"] == ["chat"]
    scrape = gw.current.runtime.metrics.scrape().decode()
    assert 'gateway_canary_state_lost{model="chat"} 1' in scrape
    assert "gateway_control_state_lost_total 1" in scrape
    for _ in range(3):
        await control.controller.tick()  # never restarts from step 0, never advances
    assert (await call(gw, "GET", "/admin/models/chat/canary")).json()["step"] == 1
    resumed = (await call(gw, "POST", "/admin/models/chat/canary/resume")).json()
    assert (resumed["state"], resumed["step"]) == ("progressing", 1)


async def test_a_lost_state_keeps_rollbacks_promotions_and_overrides() -> None:
    gw = admin_app(WITH_CANARY)
    await gw.parts.control.controller.tick()
    await call(gw, "POST", "/admin/models/chat/canary/rollback")
    await call(gw, "PUT", "/admin/models/chat/aliases/beta", {"version": "v2"})
    await lost_state(gw)
    await gw.parts.control.controller.tick()
    status = (await call(gw, "GET", "/admin/models/chat/canary")).json()
    assert status["state"] == "rolled_back" and routed(gw) == {"v1": 1.0}
    resolved = gw.current.runtime.registry.resolve("chat@beta", None).pinned
    assert resolved is not None and resolved.id == "v2"
    overrides = (await call(gw, "GET", "/admin/models/chat/overrides")).json()
    assert overrides["aliases"]["beta"]["source"] == "admin"


async def test_a_canary_that_a_fresh_replica_restarted_is_overwritten_by_the_memory() -> None:
    """In a new epoch, a canary behind the remembered one (begun anew on the empty store by a
    replica without memory) is replaced by the remembered state, paused."""
    gw = admin_app(WITH_CANARY)
    control = gw.parts.control
    await control.controller.tick()
    await call(gw, "POST", "/admin/models/chat/canary/promote")
    store = control.plane.store
    assert isinstance(store, MemoryControl)
    store.lose()
    other = admin_app(WITH_CANARY)  # another replica, no memory, on the same (empty) store
    other.parts.control.plane.store = store
    other.parts.control.controller.plane.store = store
    await other.parts.control.controller.tick()  # starts the canary from step 0
    await control.plane.poll()
    status = (await call(gw, "GET", "/admin/models/chat/canary")).json()
    assert status["state"] == "promoted" and routed(gw) == {"v2": 1.0}


class NoPersistence(MemoryControl):
    """A Redis-like store whose CONFIG answers as given (None: CONFIG disabled)."""

    name = "redis"

    def __init__(self, found: dict[str, str] | None) -> None:
        super().__init__()
        self.found = found

    async def persistence(self) -> dict[str, str] | None:
        return self.found


@pytest.mark.parametrize(
    ("found", "warned"),
    [
        ({"appendonly": "no", "save": ""}, True),
        ({"appendonly": "yes", "save": ""}, False),
        ({"appendonly": "no", "save": "3600 1"}, False),
        (None, False),  # CONFIG disabled: tolerated, only an info line
    ],
)
async def test_a_canary_on_redis_without_persistence_warns_at_start(
    found: dict[str, str] | None, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    gw = admin_app(WITH_CANARY)
    control = gw.parts.control
    control.plane.store = NoPersistence(found)
    with caplog.at_level(logging.INFO, logger="gateway.control"):
        await control.start()
        await control.stop()
    warnings = [r for r in caplog.records if "no persistence" in r.getMessage()]
    assert bool(warnings) == warned
    assert all(r.levelno == logging.WARNING for r in warnings)
