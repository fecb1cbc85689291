"""Canary end to end: two gateway replicas sharing a private redis-server, two mock versions,
continuous traffic (~60 req/s, half streamed, sticky session ids), the real controller.

Scaled for CI time (each scenario ≤ ~40 s): 1-second buckets, steps 20/40/60 % with
min_samples 80, min_duration_s 2, max_duration_s 30, no warm-up, and an absolute error margin of
5 points (`error_margin_abs: 0.05`) so that a clean candidate proves non-inferiority within a
hundred or so requests instead of the ~1,100 the default 0.5-point margin needs. The healthy
scenario judges errors only (`metric: none`); the slow one judges TTFT.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.canaryrig import (
    AUTH,
    ENV,
    TOKEN,
    applied_at,
    config,
    replicas,
    reset,
    status,
)
from tests.redis_harness import RedisServer
from tests.support import Gateway, Mock, gateway, wait_for
from tests.traffic import Load


def test_failing_candidate_is_rolled_back_on_both_replicas(
    mocks: tuple[Mock, Mock], redis: RedisServer, workdir: Path
) -> None:
    reset(mocks)
    mocks[1].configure(error_rate=0.2)
    with (
        replicas(config(mocks, redis), workdir) as gws,
        Load([g.base for g in gws], 60, sessions=500),
    ):
        times = applied_at(gws, 0.0, timeout=40)
        record = status(gws[0])["history"][-1]
        assert (record["action"], status(gws[1])["state"]) == ("rollback", "rolled_back")
        assert record["rule"].startswith(("harm.errors", "guardrail"))
        lag = max(times) - record["time"]
        print(f"\nrollback ({record['rule']}) at {record['snapshot']['step_candidate']}; "
              f"applied on both replicas {lag:.2f}s after the decision")  # fmt: skip
        assert lag < 2.0


def test_healthy_candidate_is_promoted_and_becomes_stable(
    mocks: tuple[Mock, Mock], redis: RedisServer, workdir: Path
) -> None:
    """Also: sticky sessions never switch while the weight is unchanged and only move into the
    candidate; no client error across every transition."""
    reset(mocks)
    with replicas(config(mocks, redis), workdir) as gws:
        with Load([g.base for g in gws], 60, sessions=300, stream_every=2) as load:
            started = time.monotonic()
            wait_for(lambda: status(gws[0])["state"] == "promoted", timeout=60, every=0.2)
            took = time.monotonic() - started
            applied_at(gws, 100.0, timeout=2)
            promoted = time.monotonic()
            wait_for(  # a second's traffic (60) after the promotion, sessions included
                lambda: sum(r.at >= promoted for r in load.results) >= 60,
                timeout=20,
                what="60 requests after the promotion",
            )
        for g in gws:
            models = httpx.get(f"{g.url}/models").json()["data"]
            assert models[0]["aliases"]["stable"] == "v2"
        history = status(gws[1])["history"]
        assert [(h["action"], h["step_from"]) for h in history] == [
            ("advance", 0), ("advance", 1), ("promote", 2),
        ]  # fmt: skip
        print(
            f"\npromoted after {took:.1f}s: "
            + ", ".join(f"{h['action']}@{h['time']:.1f}" for h in history)
        )
        assert load.errors() == []
        by_session: dict[str, list[str]] = {}
        for r in sorted(load.results, key=lambda r: r.at):
            by_session.setdefault(r.session, []).append(r.version)
        for versions in by_session.values():  # v1 ... v1 v2 ... v2: at most one switch, into v2
            switches = [(a, b) for a, b in itertools.pairwise(versions) if a != b]
            assert switches in ([], [("v1", "v2")]), versions


def test_candidate_300ms_slower_in_ttft_is_rolled_back(
    mocks: tuple[Mock, Mock], redis: RedisServer, workdir: Path
) -> None:
    reset(mocks)
    mocks[1].configure(ttft_ms=310)
    cfg = config(mocks, redis, metric="ttft")
    with (
        replicas(cfg, workdir) as gws,
        Load([g.base for g in gws], 60, sessions=500, stream_every=1),
    ):
        started = time.time()
        times = applied_at(gws, 0.0, timeout=40)
        record = status(gws[1])["history"][-1]
        assert (record["action"], record["rule"]) == ("rollback", "harm.ttft")  # named for TTFT
        print(f"\nttft rollback {record['time'] - started:.1f}s after traffic began, at "
              f"{record['snapshot']['step_candidate']}; applied {max(times) - record['time']:.2f}s later")  # fmt: skip


def test_killing_the_leader_hands_over_without_a_double_step(
    mocks: tuple[Mock, Mock], redis: RedisServer, workdir: Path
) -> None:
    reset(mocks)
    with replicas(config(mocks, redis), workdir) as gws:
        leader = wait_for(lambda: [g for g in gws if status(g)["leader"]], timeout=10)[0]
        other = next(g for g in gws if g is not leader)
        with Load([other.base], 60, sessions=300):
            wait_for(lambda: status(other)["step"] >= 1, timeout=40, every=0.2)
            leader.proc.send_signal(signal.SIGKILL)
            leader.proc.wait()
            wait_for(lambda: status(other)["state"] == "promoted", timeout=60, every=0.2)
        history = status(other)["history"]
        assert [(h["action"], h["step_from"]) for h in history] == [
            ("advance", 0), ("advance", 1), ("promote", 2),
        ]  # fmt: skip
        assert status(other)["leader"]


def cli(g: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_ADMIN_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "gateway", *args, "--url", g.base]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30, check=False)


def test_manual_control_through_the_cli_on_both_replicas(
    mocks: tuple[Mock, Mock], redis: RedisServer, workdir: Path
) -> None:
    reset(mocks)
    cfg = config(mocks, redis)
    cfg["models"]["chat"]["routing"]["canary"]["steps"][0]["min_samples"] = 100_000
    with replicas(cfg, workdir) as gws:
        one, two = gws
        wait_for(lambda: status(one)["generation"] >= 1, timeout=10)
        for action, state in [
            ("pause", "paused"),
            ("resume", "progressing"),
            ("rollback", "rolled_back"),
        ]:
            done = cli(one, "canary", action, "--model", "chat")
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["state"] == state
            wait_for(lambda s=state: status(two)["state"] == s, timeout=2)  # type: ignore[misc]
        shown = cli(two, "canary", "status", "--model", "chat")
        assert [h["action"] for h in json.loads(shown.stdout)["history"]] == [
            "pause",
            "resume",
            "rollback",
        ]
        assert cli(one, "status").returncode == 0


def test_weights_and_alias_through_the_cli_and_concurrent_writers(
    mocks: tuple[Mock, Mock], redis: RedisServer, workdir: Path
) -> None:
    cfg = config(mocks, redis)
    cfg["models"]["chat"]["routing"] = {"weights": {"v1": 90, "v2": 10}}
    with replicas(cfg, workdir) as (one, two):
        done = cli(one, "weights", "set", "--model", "chat", "v1=30", "v2=70")
        assert done.returncode == 0, done.stderr
        started = time.monotonic()

        def weights() -> dict[str, float]:
            data = httpx.get(f"{two.base}/admin/models", headers=AUTH).json()["data"][0]
            return {v["version"]: v["weight"] for v in data["versions"]}

        wait_for(lambda: weights() == {"v1": 0.3, "v2": 0.7}, timeout=2)
        print(f"\nweights applied on the other replica after {time.monotonic() - started:.2f}s")
        assert cli(one, "alias", "set", "--model", "chat", "stable", "v2").returncode == 0
        wait_for(
            lambda: httpx.get(f"{two.url}/models").json()["data"][0]["aliases"]["stable"] == "v2",
            timeout=2,
        )
        bad = cli(one, "weights", "set", "--model", "chat", "v9=1")
        assert bad.returncode == 1 and "v9" in bad.stderr
        generation = httpx.put(f"{one.base}/admin/models/chat/weights", headers=AUTH,
                               json={"weights": {"v1": 1}}).json()["generation"]  # fmt: skip
        bodies = [{"weights": {"v1": w, "v2": 1}, "generation": generation} for w in (2, 3)]
        codes = sorted(
            httpx.put(f"{g.base}/admin/models/chat/weights", headers=AUTH, json=b).status_code
            for g, b in zip((one, two), bodies, strict=True)
        )
        assert codes == [200, 409]


def shadow_copies(g: Gateway, model: str, version: str) -> float:
    """Finished shadow copies of `model` to `version`, all outcomes (dropped ones included)."""
    total = 0.0
    for line in httpx.get(f"{g.base}/metrics").text.splitlines():
        found = re.fullmatch(r"gateway_shadow_requests_total\{(.*)\} (\S+)", line)
        if found and {f'model="{model}"', f'version="{version}"'} <= set(found[1].split(",")):
            total += float(found[2])
    return total


def test_shadow_copies_never_touch_the_client(
    mocks: tuple[Mock, Mock], redis: RedisServer, workdir: Path
) -> None:
    """The shadow version fails every request and answers 300 ms late: clients see neither, the
    copies are counted apart, and the shadow version's own series stays empty."""
    reset(mocks)
    _base, cand = mocks
    cand.configure(error_rate=1.0, latency_ms=300)
    cand.reset()
    cfg = config(mocks, redis)
    cfg["models"]["chat"]["routing"] = {
        "weights": {"v1": 1},
        "shadow": {"version": "v2", "percent": 100},
    }
    with gateway(cfg, workdir, env=ENV) as g:
        with Load([g.base], 30, stream_every=3) as load:
            wait_for(lambda: len(load.results) >= 120, timeout=30, what="120 requests")
        assert load.errors() == [] and {r.version for r in load.results} == {"v1"}
        assert max(r.latency for r in load.results) < 0.25
        wait_for(  # every client request's copy has finished, whatever its outcome
            lambda: shadow_copies(g, "chat", "v2") == len(load.results),
            timeout=10,
            what=f"{len(load.results)} shadow copies counted",
        )
        metrics = httpx.get(f"{g.base}/metrics").text
        line = 'gateway_shadow_requests_total{model="chat",outcome="upstream_error",version="v2"}'
        assert line in metrics
        assert float(metrics.split(line)[1].split()[0]) >= 0.8 * len(load.results)
        stats = httpx.get(f"{g.base}/admin/models/chat/stats", headers=AUTH).json()
        assert stats["versions"]["v2"]["requests"] == 0
        assert cand.stats()["requests"] >= 0.8 * len(load.results)
