"""`strategy: performance` end to end: three mock versions, two replicas sharing Redis, real load.

The issue's criteria, with every time constant multiplied by `SCALE` (env GATEWAY_E2E_SCALE,
default 0.5: half-life 2.5 s, slow start 10 s, recompute 0.5 s, so the 30 s / 60 s criteria
become 15 s / 30 s; `GATEWAY_E2E_SCALE=1` runs the default settings and the unscaled criteria):

- client-caused errors (400s on one version) do not move traffic;
- one version made 200 ms slower falls to its floor (+2 points) within 30 s, and after the fault
  clears returns to fair (±3 points) within 60 s, without overshoot or oscillation;
- likewise for one version failing 20 % of requests;
- the two replicas' shares stay within 5 points of each other at every steady point.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.redis_harness import RedisServer
from tests.support import Gateway, Mock, gateway, mock_upstream, version
from tests.traffic import Load

SCALE = float(os.environ.get("GATEWAY_E2E_SCALE", "0.5"))
TOKEN = "adm-" + "p" * 28
FLOOR, FAIR = 0.05, 1 / 3
BASE_MS = 20


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("perf")


@pytest.fixture(scope="module")
def mocks(workdir: Path) -> Iterator[list[Mock]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                mock_upstream(
                    f"m{i}", "--latency-ms", str(BASE_MS), "--chunks", "4", log_dir=workdir
                )
            )
            for i in (1, 2, 3)
        ]


def config(mocks: list[Mock], redis_url: str) -> dict[str, Any]:
    return {
        "admin": {"token_env": "ADMIN_TOKEN"},
        "store": {
            "backend": "redis",
            "redis_url": redis_url,
            "bucket_s": 1,
            "window_s": 30,
            "refresh_interval_s": 0.25,
        },
        "models": {
            "chat": {
                "versions": {f"v{i}": version(m.url, m.model) for i, m in enumerate(mocks, 1)},
                "routing": {
                    "strategy": "performance",
                    "performance": {
                        "objective": "latency",
                        "min_share": FLOOR,
                        "min_samples": 20,
                        "half_life_s": 5 * SCALE,
                        "slow_start_s": 20 * SCALE,
                        "recompute_s": 1 * SCALE,
                    },
                },
            }
        },
    }


class Watch:
    """Polls both replicas' effective weights; keeps the trail for the criteria."""

    def __init__(self, gws: list[Gateway]) -> None:
        self.gws = gws
        self.trail: list[tuple[float, list[dict[str, float]]]] = []

    def poll(self) -> list[dict[str, float]]:
        auth = {"authorization": f"Bearer {TOKEN}"}
        weights = []
        for gw in self.gws:
            body = httpx.get(f"{gw.base}/admin/models/chat/stats", headers=auth, timeout=5).json()
            weights.append({v: s["weight"] for v, s in body["versions"].items()})
        self.trail.append((time.monotonic(), weights))
        return weights

    def until(
        self, check: Callable[[list[dict[str, float]]], bool], timeout: float
    ) -> float | None:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if check(self.poll()):
                return time.monotonic() - began
            time.sleep(0.25)
        return None

    def hold(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poll()
            time.sleep(0.25)

    def v3_since(self, began: float) -> list[list[float]]:
        return [[w["v3"] for w in ws] for t, ws in self.trail if t >= began]


def all_v3(check: Callable[[float], bool]) -> Callable[[list[dict[str, float]]], bool]:
    return lambda weights: all(check(w["v3"]) for w in weights)


def agree(weights: list[dict[str, float]]) -> bool:
    return all(abs(weights[0][v] - weights[1][v]) <= 0.05 for v in weights[0])


def reversals(path: list[float], deadband: float) -> int:
    turns, direction, anchor = 0, 0, path[0]
    for value in path[1:]:
        if abs(value - anchor) >= deadband:
            step = 1 if value > anchor else -1
            turns += direction != 0 and step != direction
            direction, anchor = step, value
    return turns


def fault_and_recover(
    watch: Watch, v3: Mock, fault: dict[str, float], clear: dict[str, float]
) -> dict[str, Any]:
    v3.configure(**fault)
    shifted = watch.until(all_v3(lambda w: w <= FLOOR + 0.02), timeout=30 * SCALE + 5)
    watch.hold(2)
    at_floor = watch.poll()
    v3.configure(**clear)
    began = time.monotonic()
    back = watch.until(all_v3(lambda w: abs(w - FAIR) <= 0.03), timeout=60 * SCALE + 10)
    watch.hold(3)
    paths = list(zip(*watch.v3_since(began), strict=True))
    return {
        "shifted": shifted,
        "at_floor": at_floor,
        "back": back,
        "paths": paths,
        "final": watch.poll(),
    }


def check(outcome: dict[str, Any]) -> None:
    assert outcome["shifted"] is not None and outcome["shifted"] <= 30 * SCALE, outcome
    assert agree(outcome["at_floor"]), outcome["at_floor"]
    assert outcome["back"] is not None and outcome["back"] <= 60 * SCALE, outcome
    for path in outcome["paths"]:
        assert max(path) <= FAIR + 0.03, path  # no overshoot
        assert reversals(list(path), 0.03) <= 2, path  # no oscillation
    assert agree(outcome["final"]), outcome["final"]


def test_shift_and_recover_with_two_replicas(
    mocks: list[Mock], workdir: Path, tmp_path: Path
) -> None:
    redis = RedisServer(workdir).start()
    with ExitStack() as stack:
        stack.callback(redis.stop)
        gws = [
            stack.enter_context(
                gateway(config(mocks, redis.url), tmp_path, env={"ADMIN_TOKEN": TOKEN})
            )
            for _ in range(2)
        ]
        watch = Watch(gws)
        load = stack.enter_context(Load([g.base for g in gws], rps=60, stream_every=4))
        poison = Load(
            [g.base for g in gws],
            rps=15,
            stream_every=0,
            model="chat@v3",
            headers={"x-mock-fault": "fail:400"},
        )
        with poison:  # client errors on v3: routing must not react
            watch.hold(6 * SCALE + 3)
        assert all(abs(w["v3"] - FAIR) <= 0.03 for w in watch.poll()), watch.trail[-1]
        assert poison.results and all(r.status == 400 for r in poison.results)

        slow = fault_and_recover(
            watch, mocks[2], {"latency_ms": BASE_MS + 200}, {"latency_ms": BASE_MS}
        )
        failing = fault_and_recover(
            watch, mocks[2], {"error_rate": 0.2, "seed": 7}, {"error_rate": 0.0}
        )
        load.stop()
        print(f"\nscale {SCALE}: slow {summary(slow)}; failing {summary(failing)}")
        check(slow)
        check(failing)
        served = [r for r in load.results if r.ok]
        assert len(served) > 1000


def summary(outcome: dict[str, Any]) -> str:
    gap = max(abs(a - b) for a, b in zip(*outcome["paths"], strict=True))
    return f"floor in {outcome['shifted']:.1f}s, fair in {outcome['back']:.1f}s, replica gap ≤ {gap:.3f}"
