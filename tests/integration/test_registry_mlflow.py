"""The model registry end to end: a real `mlflow server` (SQLite, temp dir, free port, one per
session), versions and runs created with the MLflow client, the gateway driven with the openai
SDK and the load driver.

Registry polls are fast here (`poll_s` 0.5 s) so that "served within poll_s + 2 s" is checked
directly; every test uses its own registered-model name.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.mlflow_harness import MlflowServer, register
from tests.support import Gateway, Mock, gateway, mock_upstream, seconds_until, wait_for
from tests.traffic import Load

if os.environ.get("CI") == "true":
    import mlflow  # a dev extra: under CI its absence fails the run instead of skipping
else:
    mlflow = pytest.importorskip("mlflow")

TOKEN = "adm-" + "r" * 28
ENV = {"ADMIN_TOKEN": TOKEN}
AUTH = {"authorization": f"Bearer {TOKEN}"}
POLL_S = 0.5
NAMES = itertools.count()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
def mocks(workdir: Path) -> Iterator[tuple[Mock, Mock, Mock]]:
    with ExitStack() as stack:
        yield (
            stack.enter_context(mock_upstream("base", "--latency-ms", "5", log_dir=workdir)),
            stack.enter_context(mock_upstream("cand", "--latency-ms", "5", log_dir=workdir)),
            stack.enter_context(mock_upstream("rogue", log_dir=workdir)),
        )


def client(server: MlflowServer) -> Any:
    return mlflow.MlflowClient(tracking_uri=server.url)


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(NAMES)}"


def allowed(*mocks: Mock) -> list[str]:
    return [f"http://127.0.0.1:{m.port}/" for m in mocks]


def config(server: MlflowServer, name: str, ok: list[str], **extra: Any) -> dict[str, Any]:
    routing = extra.pop("routing", {"follow_alias": "champion"})
    mlflow_block = {"tracking_uri": server.url, "poll_s": POLL_S, "timeout_s": 2.0}
    return {
        "admin": {"token_env": "ADMIN_TOKEN"},
        "drain": {"window_s": 0, "deadline_s": 1},
        "logging": {"access": False},
        "registry": {"mlflow": {**mlflow_block, "allowed_upstreams": ok, **extra}},
        "models": {"chat": {"registry": {"name": name}, "routing": routing}},
    }


def served_by(g: Gateway, model: str = "chat") -> str:
    sdk = openai.OpenAI(base_url=g.url, api_key="unused", max_retries=0)
    raw = sdk.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )
    return str(raw.headers["x-gateway-version"])


def registry_status(g: Gateway) -> dict[str, Any]:
    resp = httpx.get(f"{g.base}/admin/registry", headers=AUTH, timeout=5)
    resp.raise_for_status()
    return dict(resp.json())


def pinned_missing(g: Gateway, ref: str) -> bool:
    try:
        served_by(g, f"chat@{ref}")
    except openai.NotFoundError:
        return True
    return False


def test_versions_aliases_and_lineage_follow_the_registry(
    server: MlflowServer, mocks: tuple[Mock, Mock, Mock], workdir: Path
) -> None:
    base, cand, rogue = mocks
    rogue.reset()
    c, name = client(server), unique("chat")
    v1 = register(c, name, base.url, upstream_model=base.model, params={"lr": "0.01"},
                  metrics={"eval_loss": 0.3}, commit="c0ffee1")  # fmt: skip
    v2 = register(c, name, cand.url, upstream_model=cand.model)
    v3 = register(c, name, rogue.url, upstream_model=rogue.model)  # outside allowed_upstreams
    c.set_registered_model_alias(name, "champion", v1)
    cfg = config(server, name, allowed(base, cand))
    with gateway(cfg, workdir, env=ENV) as g, gateway(cfg, workdir, env=ENV) as replica:
        assert served_by(g) == served_by(replica) == v1
        listed = httpx.get(f"{g.url}/models").json()["data"][0]
        meta = {v["version"]: v for v in listed["versions"]}[v1]["metadata"]
        assert (meta["params"], meta["metrics"]) == ({"lr": "0.01"}, {"eval_loss": 0.3})
        assert (meta["code_version"], meta["experiment"], meta["status"]) == (
            "c0ffee1", "gateway-tests", "READY",
        )  # fmt: skip
        assert meta["run_id"] and meta["source"].startswith("runs:/")
        assert {v["version"] for v in listed["versions"]} == {v1, v2}
        assert listed["aliases"] == {"champion": v1}
        refused = registry_status(g)["models"]["chat"]["refused"]
        assert "allowed_upstreams" in refused[v3]
        assert pinned_missing(g, v3)

        c.set_registered_model_alias(name, "champion", v2)
        took = seconds_until(lambda: served_by(g) == served_by(replica) == v2, timeout=POLL_S + 2)
        print(f"\nalias move served by both replicas after {took:.2f}s")
        assert served_by(g, "chat@champion") == v2
        v4 = register(c, name, base.url, upstream_model=base.model)
        wait_for(lambda: not pinned_missing(g, v4) and not pinned_missing(replica, v4), POLL_S + 2)
        c.delete_model_version(name, v1)
        wait_for(lambda: pinned_missing(g, v1), timeout=POLL_S + 2)
        assert served_by(g) == v2
        shown = cli(g, "registry", "status", "--json")
        assert shown.returncode == 0, shown.stderr
        assert v3 in json.loads(shown.stdout)["models"]["chat"]["refused"]
        table = cli(g, "registry", "status").stdout
        assert f"refused {v3}: upstream {rogue.url} is outside" in table
    assert rogue.stats()["requests"] == 0


def test_a_deleted_version_finishes_its_streams_in_flight(
    server: MlflowServer, mocks: tuple[Mock, Mock, Mock], workdir: Path
) -> None:
    base, cand, _ = mocks
    c, name = client(server), unique("inflight")
    v1 = register(c, name, base.url, upstream_model=base.model)
    v2 = register(c, name, cand.url, upstream_model=cand.model)
    c.set_registered_model_alias(name, "champion", v2)
    with gateway(config(server, name, allowed(base, cand)), workdir, env=ENV) as g:
        body = {"model": f"chat@{v1}", "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
        slow = {"x-mock-fault": "chunks:10,chunk-delay:300"}  # a 3 s stream
        with httpx.stream("POST", f"{g.url}/chat/completions", json=body, headers=slow,
                          timeout=30) as resp:  # fmt: skip
            lines = resp.iter_lines()
            assert next(lines).startswith("data: ")
            c.delete_model_version(name, v1)
            wait_for(lambda: pinned_missing(g, v1), timeout=POLL_S + 2)
            rest = list(lines)
        assert resp.headers["x-gateway-version"] == v1
        assert "data: [DONE]" in rest  # the stream in flight finished on the deleted version
        assert served_by(g) == v2


def test_validate_online_reads_the_registry(
    server: MlflowServer, mocks: tuple[Mock, Mock, Mock], workdir: Path
) -> None:
    base, _, rogue = mocks
    c, name = client(server), unique("validate")
    register(c, name, base.url, upstream_model=base.model)
    refused = register(c, name, rogue.url, upstream_model=rogue.model)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config(server, name, allowed(base), routing={})))
    ok = validate(path)
    assert ok.returncode == 0, ok.stderr
    assert f"registered {name}): routable 1" in ok.stdout
    assert f"refused {refused}: upstream {rogue.url} is outside" in ok.stdout
    path.write_text(yaml.safe_dump(config(server, name + "-missing", allowed(base))))
    missing = validate(path)
    assert missing.returncode == 1
    assert "not found" in missing.stderr


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "gateway", "validate", "--online", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_last_routable_version_deleted_is_kept_and_flagged(
    server: MlflowServer, mocks: tuple[Mock, Mock, Mock], workdir: Path
) -> None:
    base = mocks[0]
    c, name = client(server), unique("solo")
    v1 = register(c, name, base.url, upstream_model=base.model)
    with gateway(config(server, name, allowed(base), routing={}), workdir, env=ENV) as g:
        assert served_by(g) == v1
        c.delete_model_version(name, v1)
        wait_for(lambda: registry_status(g)["models"]["chat"]["warning"], timeout=POLL_S + 2)
        assert served_by(g) == v1
        listed = httpx.get(f"{g.url}/models").json()["data"][0]["versions"][0]
        assert "kept" in listed["metadata"]["registry_warning"]


def test_mlflow_down_under_load_costs_no_request_and_recovers_within_a_poll(
    server: MlflowServer, mocks: tuple[Mock, Mock, Mock], workdir: Path
) -> None:
    base, cand, _ = mocks
    c, name = client(server), unique("outage")
    v1 = register(c, name, base.url, upstream_model=base.model)
    c.set_registered_model_alias(name, "champion", v1)
    cache = str(workdir / f"{name}.json")
    cfg = config(server, name, allowed(base, cand), cache_path=cache, backoff_max_s=1.0)
    with gateway(cfg, workdir, env=ENV) as g, Load([g.base], 30) as load:
        wait_for(lambda: os.path.exists(cache), timeout=5)
        server.stop()
        try:
            wait_for(lambda: registry_status(g)["up"] is False, timeout=POLL_S + 5)
            assert registry_status(g)["last_error"]
            scrape = httpx.get(f"{g.base}/metrics").text
            assert "gateway_registry_up 0" in scrape
            with gateway(cfg, workdir, env=ENV) as fresh:  # a restart while MLflow is down
                assert served_by(fresh) == v1
            time.sleep(3 * POLL_S)  # keep serving through several failed polls
        finally:
            server.start()
        took = seconds_until(lambda: registry_status(g)["up"] is True, timeout=POLL_S + 3)
        print(f"\nregistry view back {took:.2f}s after MLflow answered again")
        load.stop()
        assert load.results and load.errors() == []
        assert served_by(g) == v1


def canary_routing(**analysis: Any) -> dict[str, Any]:
    step = {"min_samples": 80, "min_duration_s": 2, "max_duration_s": 30}  # srm_floor
    return {
        "strategy": "canary",
        "retry": {"attempts": 1},
        "canary": {
            "from_registry": {"baseline_alias": "champion", "candidate_alias": "challenger"},
            "steps": [{"weight": w, **step} for w in (20, 40, 60)],
            "analysis": {
                "bucket_s": 1,
                "warmup_requests": 0,
                "warmup_s": 0,
                "error_margin_abs": 0.05,
                "metric": "none",
                **analysis,
            },
        },
    }


def canary_setup(server: MlflowServer, mocks: tuple[Mock, Mock, Mock]) -> tuple[Any, str, str, str]:
    base, cand, _ = mocks
    c, name = client(server), unique("canary")
    v1 = register(c, name, base.url, upstream_model=base.model)
    v2 = register(c, name, cand.url, upstream_model=cand.model)
    c.set_registered_model_alias(name, "champion", v1)
    c.set_registered_model_alias(name, "challenger", v2)
    return c, name, v1, v2


def canary_config(
    server: MlflowServer, name: str, mocks: tuple[Mock, Mock, Mock]
) -> dict[str, Any]:
    cfg = config(server, name, allowed(mocks[0], mocks[1]), routing=canary_routing())
    cfg["store"] = {"bucket_s": 1, "window_s": 60}
    return cfg


def test_registry_canary_of_a_bad_candidate_is_rolled_back_and_tagged(
    server: MlflowServer, mocks: tuple[Mock, Mock, Mock], workdir: Path
) -> None:
    mocks[1].configure(error_rate=0.3, latency_ms=5)
    c, name, v1, v2 = canary_setup(server, mocks)
    try:
        with gateway(canary_config(server, name, mocks), workdir, env=ENV) as g:
            with Load([g.base], 60):
                wait_for(lambda: "challenger" not in c.get_registered_model(name).aliases, 90, 0.5)
            tags = c.get_model_version(name, v2).tags
            assert tags["gateway.rollout.outcome"] == "rolled_back"
            assert tags["gateway.rollout.id"] == f"chat/{v1}->{v2}"
            decision = json.loads(tags["gateway.rollout.decision"])
            assert decision["action"] == "rollback"
            assert tags["gateway.rollout.rule"] == decision["rule"]
            assert c.get_registered_model(name).aliases == {"champion": v1}
            wait_for(lambda: served_by(g) == v1 and served_by(g) == v1, timeout=POLL_S + 2)
            c.set_registered_model_alias(name, "challenger", v2)  # the rolled-back version again
            aliases = lambda: registry_status(g)["models"]["chat"]["aliases"]  # noqa: E731
            wait_for(lambda: aliases().get("challenger") == v2, timeout=POLL_S + 2)
            canary = httpx.get(f"{g.base}/admin/models/chat/canary", headers=AUTH, timeout=5)
            assert canary.status_code == 409  # no rollout: it is never re-canaried
            assert {served_by(g) for _ in range(20)} == {v1}
    finally:
        mocks[1].configure(error_rate=0.0, latency_ms=5)


def test_registry_canary_of_a_good_candidate_is_promoted_and_champion_moved(
    server: MlflowServer, mocks: tuple[Mock, Mock, Mock], workdir: Path
) -> None:
    c, name, _, v2 = canary_setup(server, mocks)
    with gateway(canary_config(server, name, mocks), workdir, env=ENV) as g:
        with Load([g.base], 60) as load:
            wait_for(lambda: "challenger" not in c.get_registered_model(name).aliases, 120, 0.5)
            wait_for(lambda: served_by(g) == v2, timeout=POLL_S + 2)
        assert load.errors() == []
        assert c.get_registered_model(name).aliases == {"champion": v2}
        tags = c.get_model_version(name, v2).tags
        assert (tags["gateway.rollout.outcome"], tags["gateway.rollout.rule"]) == (
            "promoted", json.loads(tags["gateway.rollout.decision"])["rule"],
        )  # fmt: skip
        assert {served_by(g) for _ in range(20)} == {v2}
        assert registry_status(g)["writeback"]["pending"] == {}
    with gateway(canary_config(server, name, mocks), workdir, env=ENV) as restarted:
        canary = httpx.get(f"{restarted.base}/admin/models/chat/canary", headers=AUTH, timeout=5)
        assert canary.status_code == 409  # a restart (fresh state) starts no rollout again
        assert {served_by(restarted) for _ in range(20)} == {v2}


def cli(g: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_ADMIN_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "gateway", *args, "--url", g.base]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30, check=False)
