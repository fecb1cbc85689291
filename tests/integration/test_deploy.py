"""The deployment artefacts (Dockerfile, deploy/): they parse, agree with each other and with the gateway.

No container engine or cluster runs here, so these tests check what can be checked without one:
Prometheus rules and config with `promtool` (including the rules' own unit tests and the PromQL of
every dashboard panel), every YAML under deploy/ and the Kubernetes manifests' shape (kinds,
probes, security context, selectors, drain grace period), `kubectl kustomize` rendering when
kubectl is installed, the Grafana dashboard's structure and the metric names its queries use, the
compose file's structure and mounts (`docker compose config` too when the compose plugin is there),
the gateway configs under deploy/ through `gateway validate`, and the image's ENTRYPOINT/CMD run
locally from the venv exactly as the Dockerfile spells them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.support import free_port, require_binary, wait_http

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "gateway.json"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_CONFIG = DEPLOY / "compose" / "gateway.yaml"
K8S = DEPLOY / "k8s"
MONITORING = K8S / "monitoring"

# The gateway's metric names as exported (counters with _total, histograms by their _bucket).
KNOWN_METRICS = frozenset(
    {
        "gateway_requests_total",
        "gateway_canary_state_lost",
        "gateway_control_state_lost_total",
        "gateway_request_duration_seconds_bucket",
        "gateway_ttft_seconds_bucket",
        "gateway_overhead_seconds_bucket",
        "gateway_tokens_total",
        "gateway_routing_weight",
        "gateway_inflight",
        "gateway_upstream_requests_total",
        "gateway_retries_total",
        "gateway_retry_budget_exhausted_total",
        "gateway_ejections_total",
        "gateway_panic_mode",
        "gateway_rejected_total",
        "gateway_config_info",
        "gateway_config_reloads_total",
        "gateway_store_up",
        "gateway_store_snapshot_age_seconds",
        "gateway_canary_step",
        "gateway_canary_weight",
        "gateway_canary_state",
        "gateway_canary_evalue",
        "gateway_canary_decisions_total",
        "gateway_registry_up",
        "gateway_registry_last_sync_timestamp_seconds",
        "gateway_registry_errors_total",
        "gateway_registry_versions",
        "gateway_registry_writebacks_total",
    }
)
# Outcomes that count against a version; every query that selects failures must use exactly these.
VERSION_FAILURES = {"upstream_error", "timeout", "connect_error", "stream_cut"}
REQUIRED_ALERTS = {
    "GatewayCanaryHarmed",
    "GatewayControlStateLost",
    "GatewayVersionErrorRateHigh",
    "GatewayStoreDown",
    "GatewayConfigReloadFailing",
    "GatewayOverloaded",
    "GatewayPanicMode",
}
COMPOSE_SERVICES = {
    "redis",
    "mock-v1",
    "mock-v2",
    "gateway-1",
    "gateway-2",
    "prometheus",
    "grafana",
}
GATEWAY_SERVICES = ("gateway-1", "gateway-2")
# Dummy values for every variable a deploy/ config names; Redis is deliberately unreachable.
DUMMY_ENV = {
    "GATEWAY_ADMIN_TOKEN": "test-admin-token",
    "GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0",
}


# --- helpers ----------------------------------------------------------------------------------


def load_docs(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def load_one(path: Path) -> Any:
    docs = load_docs(path)
    assert len(docs) == 1, f"{path}: expected one YAML document, found {len(docs)}"
    return docs[0]


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, **kwargs)


def gateway_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return {**env, **DUMMY_ENV}


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_one(ALERTS)["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included (rows themselves excluded)."""
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]


def as_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced, so promtool can parse it."""
    for var, value in (("$__rate_interval", "1m"), ("$__range", "1h"), ("$model", "chat")):
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unhandled Grafana variable in {expr!r}"
    return expr


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"\[[^\]]*\]")
_MATCHERS = re.compile(r"\{[^}]*\}")
_TOKEN = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Names in a PromQL expression that are gateway metrics or recorded series (with a colon)."""
    bare = _MATCHERS.sub(" ", _BRACKETS.sub(" ", _STRINGS.sub('""', expr)))
    return {t for t in _TOKEN.findall(bare) if t.startswith("gateway_") or ":" in t}


def failure_outcome_sets(expr: str) -> list[set[str]]:
    return [set(m.split("|")) for m in re.findall(r'outcome=~"([^"]*)"', expr)]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def exec_form(op: str) -> list[str]:
    values = [args for name, args in final_stage() if name == op]
    assert len(values) == 1, f"expected one {op} in the final stage"
    form = json.loads(values[0])
    assert isinstance(form, list) and all(isinstance(x, str) for x in form), f"{op} not exec form"
    return form


def image_command(config: Path) -> list[str]:
    """ENTRYPOINT + CMD as the image runs them, with the venv's script and the repo's config."""
    entrypoint, cmd = exec_form("ENTRYPOINT"), exec_form("CMD")
    script = Path(sys.executable).parent / entrypoint[0]
    binary = str(script) if script.exists() else shutil.which(entrypoint[0])
    assert binary, f"{entrypoint[0]} is not installed in the venv"
    config_at = cmd.index("--config") + 1
    return [binary, *entrypoint[1:], *cmd[:config_at], str(config), *cmd[config_at + 1 :]]


def poll_status(url: str, status: int, timeout: float = 3.0) -> httpx.Response:
    """GET `url` until it answers `status` (signals are handled asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(url, timeout=1.0)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def duration_s(text: str) -> float:
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(text)):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def k8s_objects() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_docs(path)
    ]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}"
    return matches[0]


def k8s_gateway_config(tmp_path: Path) -> Path:
    path = tmp_path / "k8s-config.yaml"
    path.write_text(k8s_object("ConfigMap", "llm-gateway-config")["data"]["config.yaml"])
    return path


def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_one(COMPOSE)
    return data


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE.parent / source).resolve(), target))
    return mounts


def container_port(mapping: str) -> int:
    return int(str(mapping).rsplit(":", 1)[-1].split("/")[0])


# --- Prometheus rules and config ---------------------------------------------------------------


def test_promtool_check_rules() -> None:
    result = run([require_binary("promtool"), "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config() -> None:
    result = run([require_binary("promtool"), "check", "config", str(PROMETHEUS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_unit_tests_pass() -> None:
    """deploy/prometheus/alerts_test.yml: synthetic series make each alert fire (or stay quiet)."""
    tests = DEPLOY / "prometheus" / "alerts_test.yml"
    result = run([require_binary("promtool"), "test", "rules", str(tests)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": as_promql(expr)}
        for i, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([require_binary("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_required_alerts_are_labelled_and_explained() -> None:
    alerts = {r["alert"]: r for r in alert_rules() if "alert" in r}
    assert alerts.keys() >= REQUIRED_ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert {"summary", "description", "runbook"} <= rule["annotations"].keys(), name
    assert 'action="rollback"' in alerts["GatewayCanaryHarmed"]["expr"]
    assert "gateway_store_up == 0" in alerts["GatewayStoreDown"]["expr"]
    assert alerts["GatewayStoreDown"]["for"] == "1m"
    assert 'result="rejected"' in alerts["GatewayConfigReloadFailing"]["expr"]
    assert 'reason="overloaded"' in alerts["GatewayOverloaded"]["expr"]
    assert alerts["GatewayVersionErrorRateHigh"]["for"] == "5m"


def test_prometheus_scrapes_both_compose_gateways_and_loads_the_alerts() -> None:
    config = load_one(PROMETHEUS)
    rule_files = [PROMETHEUS.parent / f for f in config["rule_files"]]
    assert ALERTS in rule_files and all(f.exists() for f in rule_files)
    gateway_job = next(j for j in config["scrape_configs"] if j["job_name"] == "gateway")
    targets = {t for sc in gateway_job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{name}:8080" for name in GATEWAY_SERVICES}


# --- metric names everywhere -------------------------------------------------------------------


def test_queries_use_only_known_metric_names() -> None:
    recorded = {r["record"] for r in alert_rules() if "record" in r}
    queries = {f"alert {r.get('alert') or r['record']}": r["expr"] for r in alert_rules()}
    queries |= {f"dashboard query {i}": e for i, e in enumerate(dashboard_exprs())}
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            queries[f"variable {var['name']}"] = var["query"]["query"]
    for where, expr in queries.items():
        names = metric_names(expr)
        unknown = {n for n in names if ":" not in n} - KNOWN_METRICS
        unrecorded = {n for n in names if ":" in n} - recorded
        assert not unknown, f"{where} uses unknown metrics {unknown}: {expr}"
        assert not unrecorded, f"{where} uses series no rule records {unrecorded}: {expr}"
        assert names or "up{" in expr, f"{where} uses no gateway metric: {expr}"


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (version) (rate(gateway_requests_total{model="gateway_x",outcome=~"a|b"}'
        "[$__rate_interval])) / on (model) model_version:gateway_requests:rate5m"
    )
    assert metric_names(expr) == {"gateway_requests_total", "model_version:gateway_requests:rate5m"}


def test_failure_queries_count_exactly_the_version_failure_outcomes() -> None:
    exprs = [r["expr"] for r in alert_rules()] + dashboard_exprs()
    sets = [s for e in exprs for s in failure_outcome_sets(e)]
    assert sets, "no query selects version failures"
    assert all(s == VERSION_FAILURES for s in sets), sets


# --- Grafana ----------------------------------------------------------------------------------


def test_dashboard_structure() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36 and board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["model"]["query"]["query"] == "label_values(gateway_requests_total, model)"
    assert variables["datasource"]["type"] == "datasource"
    rows = [p for p in board["panels"] if p["type"] == "row"]
    assert [r.get("repeat") for r in rows].count("model") == 1, "one row repeated per model"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard_panels():
        assert panel.get("datasource", {}).get("uid"), f"panel {panel['title']!r} has no datasource"
        assert panel.get("targets"), f"panel {panel['title']!r} has no targets"
        assert all(t.get("expr") and t.get("refId") for t in panel["targets"]), panel["title"]
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]


def test_dashboard_model_row_shows_split_errors_latency_and_canary() -> None:
    board = dashboard()
    repeat = next(i for i, p in enumerate(board["panels"]) if p.get("repeat") == "model")
    row = [t["expr"] for p in board["panels"][repeat + 1 :] for t in p.get("targets", [])]
    assert all('model="$model"' in e for e in row), "model-row queries must filter by $model"
    text = "\n".join(row)
    assert "gateway_routing_weight" in text and "rate(gateway_requests_total" in text
    for q in ("0.5", "0.95", "0.99"):
        assert (
            f"histogram_quantile({q}, sum by (version, le) (rate(gateway_request_duration_seconds_bucket"
            in text
        )
    for q in ("0.5", "0.95"):
        assert (
            f"histogram_quantile({q}, sum by (version, le) (rate(gateway_ttft_seconds_bucket"
            in text
        )
    for metric in (
        "gateway_canary_state",
        "gateway_canary_step",
        "gateway_canary_weight",
        "gateway_canary_evalue",
    ):
        assert metric in text, metric
    top = "\n".join(t["expr"] for p in board["panels"][:repeat] for t in p.get("targets", []))
    for metric in (
        "gateway_requests_total",
        "gateway_inflight",
        "gateway_rejected_total",
        "gateway_store_up",
        "gateway_store_snapshot_age_seconds",
        "gateway_config_info",
        "gateway_config_reloads_total",
    ):
        assert metric in top, metric


def test_grafana_provisioning_matches_the_compose_mounts() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = {target: source for source, target in bind_mounts(grafana)}
    provisioning = Path(mounts["/etc/grafana/provisioning"])
    datasources = load_one(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert urlsplit(datasources[0]["url"]).hostname == "prometheus"
    assert datasources[0]["type"] == "prometheus"
    provider = load_one(provisioning / "dashboards" / "gateway.yml")["providers"][0]
    dashboards_dir = provider["options"]["path"]
    assert Path(mounts[dashboards_dir]) == DASHBOARD.parent


# --- every YAML, Kubernetes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", sorted(DEPLOY.rglob("*.y*ml")), ids=lambda p: str(p.relative_to(DEPLOY))
)
def test_every_yaml_under_deploy_parses(path: Path) -> None:
    assert load_docs(path), f"{path} is empty"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_one(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_k8s_manifest_kinds() -> None:
    kinds = sorted((o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in k8s_objects())
    assert kinds == sorted(
        [
            ("v1", "ConfigMap", "llm-gateway-config"),
            ("apps/v1", "Deployment", "llm-gateway"),
            ("apps/v1", "Deployment", "llm-gateway-redis"),
            ("v1", "Service", "llm-gateway"),
            ("v1", "Service", "llm-gateway-redis"),
            ("v1", "PersistentVolumeClaim", "llm-gateway-redis-data"),
            ("v1", "Service", "llm-gateway-admin"),
            ("networking.k8s.io/v1", "NetworkPolicy", "llm-gateway"),
            ("networking.k8s.io/v1", "NetworkPolicy", "llm-gateway-redis"),
            ("policy/v1", "PodDisruptionBudget", "llm-gateway"),
            ("autoscaling/v2", "HorizontalPodAutoscaler", "llm-gateway"),
        ]
    )


def test_gateway_deployment(tmp_path: Path) -> None:
    deployment = k8s_object("Deployment", "llm-gateway")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = load_one(k8s_gateway_config(tmp_path))
    assert deployment["spec"]["replicas"] >= 2
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    drain = config["drain"]
    # The process may take window_s + deadline_s + 5 s (uvicorn's close) after SIGTERM.
    assert pod["terminationGracePeriodSeconds"] > drain["window_s"] + drain["deadline_s"] + 5
    assert "preStop" not in container.get("lifecycle", {})
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == exec_user()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]["cpu"], "the HPA needs a CPU request"
    assert container["resources"]["limits"]["memory"]
    (token,) = [e for e in container["env"] if e["name"] == config["admin"]["token_env"]]
    assert "value" not in token and token["valueFrom"]["secretKeyRef"]["name"]
    assert not [o for o in k8s_objects() if o["kind"] == "Secret"], "no Secret is committed"
    # The args are the image's CMD, and the config it names is the mounted ConfigMap key.
    assert container["args"] == exec_form("CMD")
    config_path = Path(container["args"][container["args"].index("--config") + 1])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent)]
    assert "subPath" not in mount, "a subPath mount would never see ConfigMap updates"
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == "llm-gateway-config"
    assert {"key": "config.yaml", "path": config_path.name} in volume["configMap"]["items"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == config["listen"]["port"]
    assert config["listen"]["host"] == "0.0.0.0"
    assert config["store"]["backend"] == "redis"
    assert urlsplit(config["store"]["redis_url"]).hostname == "llm-gateway-redis"


def test_selectors_match_the_gateway_pods() -> None:
    deployment = k8s_object("Deployment", "llm-gateway")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        k8s_object("Service", "llm-gateway")["spec"]["selector"],
        k8s_object("PodDisruptionBudget", "llm-gateway")["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items(), selector
    redis = k8s_object("Deployment", "llm-gateway-redis")["spec"]["template"]["metadata"]
    assert k8s_object("Service", "llm-gateway-redis")["spec"]["selector"].items() <= (
        redis["labels"].items()
    )
    hpa = k8s_object("HorizontalPodAutoscaler", "llm-gateway")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "llm-gateway",
    }
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["minReplicas"] >= 2
    assert k8s_object("PodDisruptionBudget", "llm-gateway")["spec"].get("maxUnavailable") == 1


def test_redis_is_unprivileged_and_persists_the_control_state() -> None:
    """Issue 13: a Redis restart must not undo canary decisions or operator overrides."""
    pod = k8s_object("Deployment", "llm-gateway-redis")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    (data,) = [v for v in pod["volumes"] if v["name"] == "data"]
    claim = data["persistentVolumeClaim"]["claimName"]
    assert k8s_object("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    redis = compose()["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_kustomize_renders() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (optional: the manifests are also checked as YAML)")
    result = run([kubectl, "kustomize", str(K8S)])
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(rendered) == len(k8s_objects())
    for obj in rendered:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "llm-gateway"


def test_admin_api_has_its_own_port_behind_a_network_policy(tmp_path: Path) -> None:
    config = load_one(k8s_gateway_config(tmp_path))
    (container,) = k8s_object("Deployment", "llm-gateway")["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["admin"] == config["admin"]["listen"]["port"] != ports["http"]
    assert config["admin"]["listen"]["host"] == "0.0.0.0"
    (admin_port,) = k8s_object("Service", "llm-gateway-admin")["spec"]["ports"]
    assert admin_port["targetPort"] == "admin"
    assert [p["targetPort"] for p in k8s_object("Service", "llm-gateway")["spec"]["ports"]] == [
        "http"
    ]  # the client Service never exposes the admin port
    policy = k8s_object("NetworkPolicy", "llm-gateway")["spec"]
    pod_labels = k8s_object("Deployment", "llm-gateway")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    by_port = {rule["ports"][0]["port"]: rule for rule in policy["ingress"]}
    assert set(by_port) == {"http", "admin"}
    assert "from" not in by_port["http"]  # clients, probes and Prometheus
    (peer,) = by_port["admin"]["from"]
    assert peer == {"podSelector": {"matchLabels": {"llm-gateway/admin-access": "true"}}}
    redis = k8s_object("NetworkPolicy", "llm-gateway-redis")["spec"]
    (rule,) = redis["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": policy["podSelector"]["matchLabels"]}}]


def test_redis_password_comes_from_a_secret() -> None:
    redis = k8s_object("Deployment", "llm-gateway-redis")["spec"]["template"]["spec"]
    (server,) = redis["containers"]
    env = {e["name"]: e for e in server["env"]}
    args = server["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    for name in ("REDIS_PASSWORD", "REDISCLI_AUTH"):  # the server, and redis-cli in the probes
        assert env[name]["valueFrom"]["secretKeyRef"] == {
            "name": "llm-gateway-redis",
            "key": "password",
        }
    (gw,) = k8s_object("Deployment", "llm-gateway")["spec"]["template"]["spec"]["containers"]
    gw_env = [e["name"] for e in gw["env"]]
    assert gw_env.index("REDIS_PASSWORD") < gw_env.index("GATEWAY_REDIS_URL")  # $(...) order
    url = next(e["value"] for e in gw["env"] if e["name"] == "GATEWAY_REDIS_URL")
    assert urlsplit(url).password == "$(REDIS_PASSWORD)"
    assert urlsplit(url).hostname == "llm-gateway-redis"
    password = next(e for e in gw["env"] if e["name"] == "REDIS_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"] == {"name": "llm-gateway-redis", "key": "password"}


def monitoring_objects() -> dict[str, dict[str, Any]]:
    return {
        doc["kind"]: doc
        for path in sorted(MONITORING.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_docs(path)
    }


def test_prometheus_rule_is_generated_from_the_alerts_file() -> None:
    result = run([sys.executable, str(MONITORING / "generate.py"), "--check"])
    assert result.returncode == 0, result.stderr
    rule = monitoring_objects()["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == load_one(ALERTS)["groups"]
    listed = set(load_one(MONITORING / "kustomization.yaml")["resources"])
    assert listed == {p.name for p in MONITORING.glob("*.yaml")} - {"kustomization.yaml"}


def test_promtool_checks_the_prometheus_rule(tmp_path: Path) -> None:
    path = tmp_path / "prometheusrule-spec.yml"
    path.write_text(yaml.safe_dump(monitoring_objects()["PrometheusRule"]["spec"]))
    result = run([require_binary("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_service_monitor_scrapes_the_gateway_service() -> None:
    monitor = monitoring_objects()["ServiceMonitor"]["spec"]
    service = k8s_object("Service", "llm-gateway")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    admin = k8s_object("Service", "llm-gateway-admin")["metadata"]["labels"]
    assert not monitor["selector"]["matchLabels"].items() <= admin.items()
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # The rules' `up{job="gateway"}` and the compose job name hold in Kubernetes too.
    assert {"targetLabel": "job", "replacement": "gateway"} in endpoint["relabelings"]
    jobs = [j["job_name"] for j in load_one(PROMETHEUS)["scrape_configs"]]
    assert "gateway" in jobs


def test_kustomize_renders_the_monitoring_objects() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (optional: the manifests are also checked as YAML)")
    result = run([kubectl, "kustomize", str(MONITORING)])
    assert result.returncode == 0, result.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(result.stdout) if d}
    assert kinds == {"ServiceMonitor", "PrometheusRule"}


# --- compose ----------------------------------------------------------------------------------


def test_compose_structure() -> None:
    services = compose()["services"]
    assert services.keys() >= COMPOSE_SERVICES
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name} has no image or build"
        build = service.get("build")
        if build:
            context = (COMPOSE.parent / build["context"]).resolve()
            assert (context / build.get("dockerfile", "Dockerfile")).exists(), name
        for source, _ in bind_mounts(service):
            assert source.exists(), f"{name} mounts {source}, which does not exist"
    host_ports = [str(p).rsplit(":", 1)[0] for s in services.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"
    assert services["redis"]["image"].startswith("redis:")
    prometheus_mounts = {t: s for s, t in bind_mounts(services["prometheus"])}
    assert Path(prometheus_mounts["/etc/prometheus"]) == PROMETHEUS.parent


def test_compose_gateways_use_the_image_command_and_the_redis_config() -> None:
    services = compose()["services"]
    config = load_one(COMPOSE_CONFIG)
    cmd = exec_form("CMD")
    config_target = cmd[cmd.index("--config") + 1]
    for name in GATEWAY_SERVICES:
        service = services[name]
        assert "command" not in service, f"{name} should run the image's default CMD"
        mounts = {target: source for source, target in bind_mounts(service)}
        assert mounts[config_target] == COMPOSE_CONFIG
        assert [container_port(p) for p in service["ports"]] == [config["listen"]["port"]]
        assert "redis" in service["depends_on"]
        token = service["environment"][config["admin"]["token_env"]]
        assert token.startswith("${") and ":-" in token, "token from the environment, dev default"
        drain = config["drain"]
        assert duration_s(service["stop_grace_period"]) > drain["window_s"] + drain["deadline_s"]
    assert config["listen"]["host"] == "0.0.0.0"
    assert config["store"]["backend"] == "redis"
    assert urlsplit(config["store"]["redis_url"]).hostname == "redis"


def test_compose_upstreams_are_the_mock_services() -> None:
    services = compose()["services"]
    config = load_one(COMPOSE_CONFIG)
    for model in config["models"].values():
        for version in model["versions"].values():
            url = urlsplit(version["upstream"]["url"])
            mock = services[url.hostname]
            args = mock["command"]
            assert args[0] == "mock-upstream"
            assert args[args.index("--host") + 1] == "0.0.0.0"
            assert int(args[args.index("--port") + 1]) == url.port
            assert args[args.index("--model") + 1] == version["upstream"]["model"]
            assert str(url.port) in mock["environment"]["HEALTHCHECK_URL"]


def test_docker_compose_config() -> None:
    docker = shutil.which("docker")
    if docker is None or run([docker, "compose", "version"]).returncode != 0:
        pytest.skip("the docker compose plugin is not installed; structure checked with PyYAML")
    result = run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"])
    assert result.returncode == 0, result.stderr


# --- gateway configs and the image's command --------------------------------------------------


@pytest.mark.parametrize("which", ["compose", "k8s-configmap"])
def test_deploy_configs_validate(which: str, tmp_path: Path) -> None:
    path = COMPOSE_CONFIG if which == "compose" else k8s_gateway_config(tmp_path)
    result = run([sys.executable, "-m", "gateway", "validate", str(path)], env=gateway_env())
    assert result.returncode == 0, result.stdout + result.stderr


def exec_user() -> str:
    (user,) = [args for op, args in final_stage() if op == "USER"]
    return user.split(":")[0]


def test_dockerfile_shape() -> None:
    instructions = dockerfile()
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) >= 2, "multi-stage build"
    args = dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)
    base = final_stage()[0][1].split()[0]
    assert re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base) == "python:3.11-slim"
    final = dict(final_stage())
    assert exec_user().isdigit() and exec_user() != "0", "numeric non-root USER (runAsNonRoot)"
    assert final["EXPOSE"].split() == ["8080"]
    assert final["STOPSIGNAL"] == "SIGTERM"
    assert "python" in final["HEALTHCHECK"] and "/healthz" in final["ENV"]
    assert exec_form("ENTRYPOINT") == ["gateway"]
    assert exec_form("CMD") == ["serve", "--config", "/etc/gateway/config.yaml"]
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for op, arguments in instructions:
        if op == "COPY" and not arguments.startswith("--from"):
            *sources, _ = arguments.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source not in ignored, f"{source} is copied but .dockerignore'd"


def test_image_entrypoint_help() -> None:
    binary = image_command(COMPOSE_CONFIG)[0]
    result = run([binary, *exec_form("ENTRYPOINT")[1:], "--help"])
    assert result.returncode == 0, result.stderr
    for verb in ("serve", "validate", "mock-upstream"):
        assert verb in result.stdout


def test_image_entrypoint_validates_the_compose_config() -> None:
    binary = image_command(COMPOSE_CONFIG)[0]
    result = run([binary, "validate", str(COMPOSE_CONFIG)], env=gateway_env())
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_command_serves_without_redis_and_drains_on_sigterm(tmp_path: Path) -> None:
    """ENTRYPOINT + CMD on the compose config, Redis unreachable: it serves, then drains."""
    port = free_port()
    cmd = [*image_command(COMPOSE_CONFIG), "--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "gateway.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=gateway_env())
    try:
        wait_http(f"{base}/healthz", proc=proc)
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert "gateway_inflight" in httpx.get(f"{base}/metrics").text
        proc.send_signal(signal.SIGTERM)
        assert poll_status(f"{base}/readyz", 503).json()["status"] == "draining"
        assert httpx.get(f"{base}/healthz").status_code == 200, "alive while draining"
        proc.send_signal(signal.SIGTERM)  # a second signal exits without waiting out the drain
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in (tmp_path / "gateway.log").read_text(errors="replace")
