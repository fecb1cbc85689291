"""The model registry's pure parts and its poller, against a fake MLflow (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from gateway.canary import judge
from gateway.config import parse_config
from gateway.config.canary import canary_settings
from gateway.config.routes import ModelRegistry
from gateway.config.schema import GatewayConfig, Mlflow
from gateway.control.controller import CanaryController
from gateway.control.plane import ControlPlane
from gateway.control.registry_writeback import RegistryWriteback
from gateway.control.store import MemoryControl
from gateway.errors import ConfigError, RegistryError, RegistryNotFound
from gateway.modelregistry.client import MlflowClient
from gateway.modelregistry.merge import resolve
from gateway.modelregistry.poller import RegistryPoller
from gateway.modelregistry.view import RegistryView, allowed, model_view
from gateway.observability.metrics import Metrics
from gateway.runtime.current import Current
from gateway.runtime.overrides import canary_id
from gateway.runtime.snapshot import Runtime
from tests.support import ManualClock

OK_URL = "http://chat-1.models.svc:8000/v1"
ALLOWED = ("*.models.svc",)


class FakeMlflow:
    """An in-memory registry answering the REST calls the gateway makes."""

    def __init__(self) -> None:
        self.versions: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, str] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.down = False
        self.page = 2
        self.calls: list[str] = []
        self.headers: list[httpx.Headers] = []
        self.fail_writes = False

    def add(self, vid: str, url: str | None = OK_URL, status: str = "READY", **extra: Any) -> None:
        tags = [{"key": "serving_url", "value": url}] if url else []
        self.versions[vid] = {"name": "chat", "version": vid, "status": status, "tags": tags,
                              "creation_timestamp": 1_700_000_000_000, **extra}  # fmt: skip

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.url.path)
        self.headers.append(request.headers)
        if self.down:
            raise httpx.ConnectError("refused", request=request)
        path = request.url.path.removeprefix("/api/2.0/mlflow")
        q = request.url.params
        if path == "/registered-models/get":
            if q["name"] != "chat":
                return _error(404, "RESOURCE_DOES_NOT_EXIST")
            aliases = [{"alias": a, "version": v} for a, v in self.aliases.items()]
            return httpx.Response(
                200, json={"registered_model": {"name": "chat", "aliases": aliases}}
            )
        if path == "/model-versions/search":
            ordered = sorted(self.versions.values(), key=lambda v: -int(v["version"]))
            start = int(q.get("page_token") or 0)
            page = ordered[start : start + self.page]
            body: dict[str, Any] = {"model_versions": page}
            if start + self.page < len(ordered):
                body["next_page_token"] = str(start + self.page)
            return httpx.Response(200, json=body)
        if path == "/runs/get":
            run = self.runs.get(q["run_id"])
            return (
                httpx.Response(200, json={"run": run})
                if run
                else _error(404, "RESOURCE_DOES_NOT_EXIST")
            )
        if request.method in ("POST", "DELETE"):
            return self.write(path, request.method, json.loads(request.content))
        if path == "/experiments/get":
            return httpx.Response(200, json={"experiment": {"name": "exp-" + q["experiment_id"]}})
        return _error(404, "ENDPOINT_NOT_FOUND")

    def write(self, path: str, method: str, body: dict[str, Any]) -> httpx.Response:
        if self.fail_writes:
            return _error(503, "TEMPORARILY_UNAVAILABLE")
        if path == "/model-versions/set-tag":
            tags = self.versions[body["version"]]["tags"]
            tags[:] = [t for t in tags if t["key"] != body["key"]]
            tags.append({"key": body["key"], "value": body["value"]})
        elif path == "/registered-models/alias" and method == "POST":
            self.aliases[body["alias"]] = body["version"]
        elif path == "/registered-models/alias":
            self.aliases.pop(body["alias"], None)
        return httpx.Response(200, json={})

    def tag(self, vid: str, key: str) -> str | None:
        return next((t["value"] for t in self.versions[vid]["tags"] if t["key"] == key), None)

    def client(self, token: str | None = None) -> MlflowClient:
        return MlflowClient(
            "http://mlflow:5000", token, transport=httpx.MockTransport(self.handler)
        )


def _error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error_code": code, "message": code.lower()})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_client_follows_pages_sends_the_token_and_maps_errors() -> None:
    fake = FakeMlflow()
    for vid in "12345":
        fake.add(vid)
    client = fake.client("tok-1")
    got = run(client.versions("chat", 1000))
    assert [v["version"] for v in got] == ["5", "4", "3", "2", "1"]
    assert fake.calls.count("/api/2.0/mlflow/model-versions/search") == 3
    assert fake.headers[0]["authorization"] == "Bearer tok-1"
    assert len(run(fake.client().versions("chat", 3))) == 3  # the limit bounds the pages read
    with pytest.raises(RegistryNotFound):
        run(client.registered_model("other"))
    fake.down = True
    with pytest.raises(RegistryError, match="ConnectError"):
        run(client.registered_model("chat"))


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>proxy error</html>"),
        httpx.Response(200, json=[1, 2]),
        httpx.Response(200, json={"registered_model": "x"}),
        httpx.Response(503, text="busy"),
    ],
)
def test_garbled_answers_are_registry_errors(response: httpx.Response) -> None:
    client = MlflowClient("http://m", transport=httpx.MockTransport(lambda _: response))
    with pytest.raises(RegistryError):
        run(client.registered_model("chat"))


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://chat-1.models.svc:8000/v1", True),
        ("http://models.svc.evil.com/v1", False),
        ("http://10.0.0.5:8000/v1", True),
        ("http://10.0.0.5:80001/v1", False),
        ("http://10.0.0.50:8000/v1", False),
        ("http://gpu.internal/v1", True),
        ("http://gpu.internal.evil/v1", False),
    ],
)
def test_allowed_upstreams_match_hosts_subdomains_and_prefixes(url: str, ok: bool) -> None:
    entries = ("*.models.svc", "http://10.0.0.5:8000", "gpu.internal")
    assert allowed(url, entries) is ok


def view_of(fake: FakeMlflow, settings: ModelRegistry | None = None) -> RegistryView:
    client = fake.client()
    registered = run(client.registered_model("chat"))
    versions = run(client.versions("chat", 100))
    runs = {rid: r for rid, r in fake.runs.items()}
    mv = model_view("chat", settings or ModelRegistry(), ALLOWED, registered, versions, runs,
                    {"7": "experiment-7"}, 1.0)  # fmt: skip
    return RegistryView({"chat": mv})


def test_versions_upstreams_lineage_and_refusals() -> None:
    fake = FakeMlflow()
    fake.runs["r1"] = {
        "info": {"run_id": "r1", "run_name": "train", "experiment_id": "7", "user_id": "ana",
                 "start_time": 1_700_000_000_000, "end_time": 1_700_000_060_000},
        "data": {"params": [{"key": "lr", "value": "0.1"}],
                 "metrics": [{"key": "loss", "value": 0.2}],
                 "tags": [{"key": "mlflow.source.git.commit", "value": "abc123"}]},
    }  # fmt: skip
    fake.add("1", run_id="r1", description="first", source="runs:/r1/model")
    fake.add("2", url=None)
    fake.add("3", status="PENDING_REGISTRATION")
    fake.add("4", url="http://evil.example.com/v1")
    fake.add("5", url="ftp://chat.models.svc/v1")
    mv = view_of(fake).models["chat"]
    assert [v.id for v in mv.versions] == ["5", "4", "3", "2", "1"]
    assert list(mv.routable) == ["1"]
    refused = mv.refused
    assert "no upstream" in refused["2"]
    assert "PENDING_REGISTRATION" in refused["3"]
    assert "allowed_upstreams" in refused["4"]
    assert "http:// or https://" in refused["5"]
    meta = mv.routable["1"].metadata
    assert (meta["run_name"], meta["experiment"], meta["user"]) == ("train", "experiment-7", "ana")
    assert (meta["params"], meta["metrics"], meta["code_version"]) == (
        {"lr": "0.1"},
        {"loss": 0.2},
        "abc123",
    )
    assert meta["created"].startswith("2023-11-14T22:13:20")
    assert (meta["description"], meta["source"]) == ("first", "runs:/r1/model")
    templated = view_of(fake, ModelRegistry(url_template="http://chat-{version}.models.svc/v1"))
    assert templated.models["chat"].routable["2"].url == "http://chat-2.models.svc/v1"


def test_a_version_without_a_number_is_a_garbled_answer() -> None:
    with pytest.raises(RegistryError):
        model_view(
            "chat", ModelRegistry(), ALLOWED, {"name": "chat"}, [{"status": "READY"}], {}, {}, 0
        )


BASE = """
registry:
  mlflow: {tracking_uri: "http://mlflow:5000", allowed_upstreams: ["*.models.svc"], poll_s: 1}
models:
  chat:
    registry: {}
"""


def cfg_with(routing: str = "", extra: str = "") -> GatewayConfig:
    return parse_config(BASE + extra + (f"    routing: {routing}\n" if routing else ""), {})


def test_resolve_follows_the_alias_and_merges_yaml_versions() -> None:
    fake = FakeMlflow()
    for vid in "123":
        fake.add(vid, url=f"http://chat-{vid}.models.svc/v1")
    fake.aliases = {"champion": "2"}
    extra = (
        "    versions:\n"
        "      '2': {upstream: {url: 'http://pinned.models.svc/v1', model: m}, metadata: {owner: ml}}\n"
        "      y1: {upstream: {url: 'http://y.models.svc/v1', model: y}}\n"
    )
    cfg = resolve(cfg_with("{follow_alias: champion}", extra), view_of(fake), {})
    chat = cfg.models["chat"]
    assert set(chat.versions) == {"1", "2", "3", "y1"}
    assert chat.routing.weights == {"3": 0.0, "2": 1.0, "1": 0.0, "y1": 0.0}
    two = chat.versions["2"]
    assert two.upstream.url == "http://pinned.models.svc/v1"  # YAML's upstream wins
    assert (two.metadata["owner"], two.metadata["registry"]) == ("ml", "mlflow")
    assert chat.aliases == {"champion": "2"}
    fake.aliases = {}
    newest = resolve(cfg_with("{follow_alias: champion}", extra), view_of(fake), {})
    assert newest.models["chat"].routing.weights == {"3": 1.0, "2": 0.0, "1": 0.0, "y1": 0.0}


def test_resolve_derives_the_canary_but_never_for_a_rolled_back_candidate() -> None:
    fake = FakeMlflow()
    fake.add("1")
    fake.add("2")
    fake.aliases = {"champion": "1", "challenger": "2"}
    routing = "{strategy: canary, canary: {from_registry: {}}}"
    canary = resolve(cfg_with(routing), view_of(fake), {}).models["chat"].routing.canary
    assert canary is not None
    assert (canary.baseline, canary.candidate, canary.promote_alias) == ("1", "2", "champion")
    fake.versions["2"]["tags"].append({"key": "gateway.rollout.outcome", "value": "rolled_back"})
    chat = resolve(cfg_with(routing), view_of(fake), {}).models["chat"]
    assert chat.routing.canary is None
    assert chat.routing.weights == {"2": 0.0, "1": 1.0}


def test_resolve_leaves_unread_models_out_and_refuses_what_cannot_route() -> None:
    assert resolve(cfg_with(), None, {}).models == {}
    fake = FakeMlflow()
    fake.add("1")
    with pytest.raises(ConfigError, match="unknown version '9'"):
        resolve(cfg_with("{weights: {'9': 1}}"), view_of(fake), {})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (BASE.replace('allowed_upstreams: ["*.models.svc"], ', ""), "allowed_upstreams: required"),
        (
            BASE.replace('tracking_uri: "http://mlflow:5000", ', ""),
            "MLFLOW_TRACKING_URI is not set",
        ),
        (BASE.replace('"*.models.svc"', '"bad host!"'), "neither a host nor a URL"),
        ("models: {chat: {registry: {}}}\n", "needs a top-level registry.mlflow block"),
        (BASE + "    routing: {follow_alias: a, weights: {x: 1}}\n", "follow_alias needs"),
        (BASE + "    registry: {url_template: 'http://x/v1'}\n", "duplicate"),
    ],
)
def test_registry_config_problems(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, {})
    assert any(fragment in p for p in err.value.problems), err.value.problems


def test_the_tracking_uri_from_the_environment_is_checked_too() -> None:
    text = BASE.replace('tracking_uri: "http://mlflow:5000", ', "")
    with pytest.raises(ConfigError, match="must not carry credentials"):
        parse_config(text, {"MLFLOW_TRACKING_URI": "http://user:pw@mlflow:5000"})
    cfg = parse_config(text, {"MLFLOW_TRACKING_URI": "http://mlflow:5000/"})
    assert cfg.registry is not None
    assert (
        cfg.registry.mlflow.uri({"MLFLOW_TRACKING_URI": "http://mlflow:5000/"})
        == "http://mlflow:5000"
    )


def test_template_must_name_the_version() -> None:
    with pytest.raises(ValueError, match="must contain"):
        ModelRegistry(url_template="http://chat.models.svc/v1")


class Harness:
    def __init__(self, tmp: Path, fake: FakeMlflow, reject: Callable[[RegistryView], bool]) -> None:
        self.applied: list[RegistryView] = []

        def apply(view: RegistryView) -> None:
            if reject(view):
                raise ConfigError(["models.chat: would not route"])
            self.applied.append(view)

        settings = Mlflow(allowed_upstreams=ALLOWED, poll_s=5, cache_path=str(tmp / "cache.json"))
        self.metrics = Metrics()
        self.poller = RegistryPoller(
            settings, lambda: {"chat": ModelRegistry()}, fake.client(), apply,
            self.metrics.registry, ManualClock(),
        )  # fmt: skip


def test_poller_keeps_the_last_good_view_through_faults_and_backs_off(tmp_path: Path) -> None:
    fake = FakeMlflow()
    fake.add("1")
    h = Harness(tmp_path, fake, lambda view: False)
    p = h.poller
    assert run(p.poll()) and p.up and list(p.view.models["chat"].routable) == ["1"]  # type: ignore[union-attr]
    h.poller._clock.now += 10  # type: ignore[attr-defined]
    assert not run(p.poll())  # the same answer, read later, is not re-applied
    assert len(h.applied) == 1
    fake.down = True
    delays = []
    for _ in range(6):
        assert not run(p.poll())
        delays.append(p.delay())
    assert p.up is False and "ConnectError" in (p.last_error or "")
    assert delays[0] < delays[2] and max(delays) <= 5  # backoff, capped at poll_s
    assert "gateway_registry_up 0" in h.metrics.scrape().decode()
    fake.down = False
    fake.add("2")
    assert run(p.poll()) and p.up and p.failures == 0 and p.delay() == 5
    cached = json.loads((tmp_path / "cache.json").read_text())
    assert set(cached["models"]["chat"]["versions"][0]) >= {"id", "url", "metadata"}
    assert p.load_cache() == p.view


def test_a_deleted_last_version_is_kept_and_flagged(tmp_path: Path) -> None:
    fake = FakeMlflow()
    fake.add("1")
    p = Harness(tmp_path, fake, lambda view: False).poller
    run(p.poll())
    del fake.versions["1"]
    fake.add("2", status="FAILED_REGISTRATION")
    run(p.poll())
    mv = p.view.models["chat"]  # type: ignore[union-attr]
    assert list(mv.routable) == ["1"] and mv.warning
    assert "registry_warning" in mv.routable["1"].metadata
    assert "FAILED_REGISTRATION" in p.status()["models"]["chat"]["problem"]


def test_an_answer_apply_refuses_is_not_adopted(tmp_path: Path) -> None:
    fake = FakeMlflow()
    fake.add("1")
    h = Harness(tmp_path, fake, lambda view: "2" in view.models["chat"].routable)
    run(h.poller.poll())
    fake.add("2")
    assert not run(h.poller.poll())
    assert list(h.poller.view.models["chat"].routable) == ["1"]  # type: ignore[union-attr]
    assert "would not route" in (h.poller.last_error or "")


def test_write_back_retries_until_it_lands_then_stops(tmp_path: Path) -> None:
    fake = FakeMlflow()
    fake.add("1")
    fake.add("2")
    fake.aliases = {"champion": "1", "challenger": "2"}
    cfg = cfg_with("{strategy: canary, canary: {from_registry: {}}}")
    current = Current(Runtime.build(cfg, Metrics(), {}, view=view_of(fake)))
    plane = ControlPlane(MemoryControl(), current, {})
    controller = CanaryController(
        plane, cast(Any, None), lambda: current.runtime.config.models, time.time
    )
    canary = current.runtime.config.models["chat"].routing.canary
    assert canary is not None
    settings = canary_settings(canary)
    state, record = judge.rollback(settings, judge.initial_state(settings, 10.0), 20.0, "bad")

    async def scenario() -> list[list[str]]:
        await plane.store.cas(
            "chat", 0, {"canary": state.to_dict(), "canary_id": canary_id(canary)}
        )
        await plane.store.append_history("chat", json.dumps(record.to_dict()))
        await plane.poll()
        writeback = RegistryWriteback(
            fake.client(), controller, current.runtime.metrics.registry, _no_refresh
        )
        done = [await writeback.tick()]  # not the leader: nothing written
        controller.leading.add("chat")
        fake.fail_writes = True
        done += [await writeback.tick(), await writeback.tick()]
        assert writeback.status()["pending"]["chat"]["attempts"] == 2
        fake.fail_writes = False
        done += [await writeback.tick(), await writeback.tick()]
        assert writeback.status()["pending"] == {}
        return done

    assert run(scenario()) == [[], [], [], ["chat"], []]
    assert fake.aliases == {"champion": "1"}
    assert (fake.tag("2", "gateway.rollout.outcome"), fake.tag("2", "gateway.rollout.id")) == (
        "rolled_back", "chat/1->2",
    )  # fmt: skip
    decision = json.loads(fake.tag("2", "gateway.rollout.decision") or "{}")
    assert (decision["action"], fake.tag("2", "gateway.rollout.rule")) == (
        "rollback",
        decision["rule"],
    )
    assert fake.tag("2", "gateway.rollout.decided_at") == "1970-01-01T00:00:20+00:00"


async def _no_refresh() -> bool:
    return False
