"""The operator CLI against a running gateway: `gateway status` (table and --json) and `reload`.

The table's numbers must be the admin API's at the same moment (read between two unchanged
reads of `/admin/models/{model}/stats`); weights must also match `/metrics`. A wrong or missing
token exits 1 with the error and never prints the token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.cli import main
from tests.support import Gateway, free_port, gateway, mock_upstream, secret, version, wait_for

TOKEN = secret("cli-admin-token-3b7e91d04a")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("admin-cli")
    with mock_upstream("cli-model", "--latency-ms", "5", log_dir=tmp) as up:
        config = {
            "admin": {"token_env": "CLI_ADMIN_TOKEN"},
            "store": {"bucket_s": 1, "window_s": 30},
            "models": {
                "chat": {
                    "aliases": {"stable": "v1"},
                    "versions": {"v1": version(up.url, up.model), "v2": version(up.url, up.model)},
                    "routing": {"weights": {"v1": 60, "v2": 40}},
                }
            },
        }
        with gateway(config, tmp, env={"CLI_ADMIN_TOKEN": TOKEN}) as running:
            body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
            with httpx.Client(base_url=running.url, timeout=10) as client:
                for i in range(40):
                    client.post("/chat/completions", json={**body, "stream": bool(i % 2)})
            wait_for(  # until the store snapshot has them
                lambda: all(
                    v["samples"] > 0
                    for v in api(running, "/admin/models/chat/stats")["versions"].values()
                ),
                timeout=10,
                every=0.2,
                what="samples of both versions in the store snapshot",
            )
            yield running


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", TOKEN)


def api(gw: Gateway, path: str) -> Any:
    auth = {"authorization": f"Bearer {TOKEN}"}
    return httpx.get(f"{gw.base}{path}", headers=auth, timeout=5).json()


def rows(table: str) -> dict[str, list[str]]:
    """version -> [weight, req/s, err%, p95, ttft95] as printed."""
    lines = table.strip().splitlines()
    assert lines[0].split()[:7] == ["MODEL", "VERSION", "WEIGHT", "REQ/S", "ERR%", "P95", "MS"]
    return {
        cols[1]: cols[2:7] for cols in (line.split() for line in lines[1:]) if cols[0] == "chat"
    }


def expected(stats: dict[str, Any]) -> dict[str, list[str]]:
    def num(v: Any, scale: float = 1) -> str:
        return "-" if v is None else f"{scale * float(v):.1f}"

    return {
        vid: [
            num(s["weight"], 100),
            num(s["requests_per_s"]),
            num(s["error_rate"], 100),
            num(s["latency_p95_ms"]),
            num(s["ttft_p95_ms"]),
        ]
        for vid, s in stats["versions"].items()
    }


def test_status_table_matches_the_admin_api(
    gw: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(10):
        before = api(gw, "/admin/models/chat/stats")["versions"]
        assert main(["status", "--url", gw.base]) == 0
        after = api(gw, "/admin/models/chat/stats")["versions"]
        printed = rows(capsys.readouterr().out)
        if before == after:  # one store snapshot throughout: the table must show exactly it
            assert printed == expected({"versions": before})
            assert all(v["samples"] > 0 for v in before.values())
            break
    else:
        pytest.fail("the stats never held still for one CLI call")
    text = httpx.get(f"{gw.base}/metrics", timeout=5).text
    pattern = r'^gateway_routing_weight\{model="chat",version="(\w+)"\} (\S+)$'
    metrics = {m[1]: f"{100 * float(m[2]):.1f}" for m in re.finditer(pattern, text, re.M)}
    assert metrics == {v: cols[0] for v, cols in printed.items()} == {"v1": "60.0", "v2": "40.0"}


def test_status_json(gw: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--url", gw.base, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"models", "stats", "canaries"}
    assert data["models"] == api(gw, "/admin/models")["data"]
    weights = {v: s["weight"] for v, s in data["stats"]["chat"]["versions"].items()}
    assert weights == {"v1": 0.6, "v2": 0.4}
    canary = httpx.get(
        f"{gw.base}/admin/models/chat/canary", headers={"authorization": f"Bearer {TOKEN}"}
    )
    if canary.status_code != 200:  # no canary endpoint, or no canary on this model
        assert data["canaries"] == {"chat": None}


@pytest.mark.parametrize("wrong", [TOKEN + "x", "short", "Bearer " + TOKEN])
def test_wrong_token_exits_1_without_echoing_it(
    gw: Gateway, wrong: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", wrong)
    assert main(["status", "--url", gw.base]) == 1
    out, err = capsys.readouterr()
    assert "HTTP 401" in err and "admin token missing or invalid" in err
    assert wrong not in out + err and TOKEN not in out + err


def test_missing_token_and_unreachable_gateway(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GATEWAY_ADMIN_TOKEN")
    assert main(["status", "--url", gw.base]) == 1
    assert "set GATEWAY_ADMIN_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", TOKEN)
    assert main(["status", "--url", f"http://127.0.0.1:{free_port()}"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("error:") and TOKEN not in out + err


def test_reload(gw: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    revision = api(gw, "/readyz")["revision"]
    assert main(["reload", "--url", gw.base]) == 0
    assert json.loads(capsys.readouterr().out)["revision"] == revision  # same file, same revision
