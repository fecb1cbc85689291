"""R3: outlier ejection, half-open probes, back-off, re-admission, never-eject-all and panic.

Scaled down to CI from the full-size scenario (its numbers in parentheses):
- Timers: `consecutive_failures: 5`, `base_s: 1` (full size: 3 s in tests), `slow_start_s: 1`, so the
  ejection ladder 1 s → 2 s → 4 s fits in ~8 s. Load is closed-loop from 3 client threads
  (several hundred requests per second), so "ejected after ≤ 5 + concurrency failures" means
  ≤ 8, and each half-open probe follows its ejection's end within a few requests (a probe needs
  a v2-first pick, ≈ 1/3 of requests): a 0.3 s slack on every measured gap covers that.
- Three clients, not more, so that "0 client errors" is deterministic: the retry budget's floor
  (`min_retries: 3` retries in flight) then always admits a retry; with 4 clients all retrying
  at once, the 4th retry is refused by design and its 502 reaches the client.
- Ejection periods are measured from v2's request arrivals, recorded by a pass-through
  `FaultProxy` in front of v2: the first gap (last failure → first probe) lies in
  [0.9, 1.1 + slack] s, the second (probe → probe) in [1.8, 2.2 + slack] s (base × 2^k, ±10 %).
- The full-size jitter check across 3 gateway instances is not run (one instance here; the ±10 %
  jitter itself is unit-tested with an injected RNG).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import binomtest

from tests.faultproxy import FaultProxy, fault_proxy
from tests.resilience import (
    BackgroundLoad,
    RawClient,
    chat_config,
    load,
    percentile,
    scrape,
)
from tests.support import Gateway, Mock, gateway, mock_upstream, wait_for

VIDS = ("v1", "v2", "v3")
WEIGHTS = {"v1": 34, "v2": 33, "v3": 33}
EJECTION = {"consecutive_failures": 5, "base_s": 1, "slow_start_s": 1}
THREADS = 3
SLACK_S = 0.3
CHAT_BODY: tuple[dict[str, Any], dict[str, str]] = ({"model": "chat"}, {})


@pytest.fixture(scope="module")
def mocks(workdir: Path) -> Iterator[dict[str, Mock]]:
    with (
        mock_upstream("up-v1", log_dir=workdir) as one,
        mock_upstream("up-v2", log_dir=workdir) as two,
        mock_upstream("up-v3", log_dir=workdir) as three,
    ):
        yield dict(zip(VIDS, (one, two, three), strict=True))


@pytest.fixture
def v2_proxy(mocks: dict[str, Mock]) -> Iterator[FaultProxy]:
    with fault_proxy(mocks["v2"].port) as proxy:
        yield proxy


@pytest.fixture(autouse=True)
def healthy(mocks: dict[str, Mock]) -> None:
    for mock in mocks.values():
        mock.configure(error_rate=0.0, latency_ms=0.0, seed=0)
        mock.reset()


def _config(mocks: dict[str, Mock], **ejection: Any) -> dict[str, Any]:
    urls = {vid: mocks[vid].url for vid in VIDS}
    return chat_config(urls, WEIGHTS, ejection={**EJECTION, **ejection})


def _fail(mocks: dict[str, Mock], *vids: str, rate: float = 1.0) -> None:
    for vid in vids:
        mocks[vid].configure(error_rate=rate)


def _split(arrivals: list[float]) -> tuple[list[float], list[float]]:
    """v2's arrivals: the burst before the first ejection, then everything after it."""
    for i in range(len(arrivals) - 1):
        if arrivals[i + 1] - arrivals[i] > 0.5:
            return arrivals[: i + 1], arrivals[i + 1 :]
    return arrivals, []


def test_r3a_failing_version_is_ejected_probed_backed_off_and_readmitted(
    mocks: dict[str, Mock], v2_proxy: FaultProxy, workdir: Path
) -> None:
    config = _config(mocks)
    config["models"]["chat"]["versions"]["v2"]["upstream"]["url"] = v2_proxy.url
    with gateway(config, workdir) as gw:
        _fail(mocks, "v2")
        v2 = v2_proxy.exchanges
        with BackgroundLoad(gw.base, lambda i: CHAT_BODY, threads=THREADS) as bg:
            # fault on until the second probe has failed, then cleared
            wait_for(lambda: len(_split([e.started for e in v2])[1]) >= 2, 8.0, what="two probes")
            _fail(mocks, "v2", rate=0.0)
            cleared = time.monotonic()
            wait_for(lambda: len(_split([e.started for e in v2])[1]) >= 4, 6.0, what="re-admission")
            time.sleep(1.0 + SLACK_S)  # past the 1 s slow-start ramp
            during = bg.stop()
        after = _steady_share(gw)
        metrics = scrape(gw)
        assert "Traceback" not in gw.log()

    assert len(during) > 500 and [r for r in during if not r.ok] == []
    burst, rest = _split([e.started for e in v2])
    probe1, probe2, probe3 = rest[:3]
    gaps = (probe1 - burst[-1], probe2 - probe1, probe3 - probe2)
    rate = len(during) / (during[-1].ended - during[0].started)
    print(f"R3A: {rate:.0f} rps, burst {len(burst)}, gaps {[round(g, 3) for g in gaps]}")
    # ejected after ≤ 5 + concurrency consecutive failures
    assert 5 <= len(burst) <= 5 + THREADS
    # while ejected, v2 saw single probes only, and each ejection lasted twice the one before
    assert 0.9 <= probe1 - burst[-1] <= 1.1 + SLACK_S
    assert 1.8 <= probe2 - probe1 <= 2.2 + SLACK_S
    assert probe2 < cleared < probe3  # the third probe is the first after the fault cleared
    assert 3.6 <= probe3 - probe2 <= 4.4 + SLACK_S
    assert metrics.value("gateway_ejections_total", model="chat", version="v2") == 3
    assert metrics.value("gateway_ejections_total", model="chat", version="v1") == 0
    assert metrics.value("gateway_panic_mode", model="chat") == 0
    fails = metrics.value("gateway_upstream_requests_total", version="v2", outcome="upstream_error")
    assert metrics.value("gateway_upstream_requests_total", version="v2", outcome="success") > 0
    assert fails == len(burst) + 2 == mocks["v2"].stats()["errors_sent"]
    # after the ramp, v2 is back to its configured share
    served_v2 = sum(r.version == "v2" for r in after)
    assert all(r.ok for r in after) and binomtest(served_v2, len(after), 0.33).pvalue > 1e-6


def _steady_share(gw: Gateway) -> list[Any]:
    return asyncio.run(load(gw.base, 300, THREADS, lambda i: CHAT_BODY))


def test_r3b_two_of_three_failing_the_healthy_one_serves_everything(
    mocks: dict[str, Mock], workdir: Path
) -> None:
    with gateway(_config(mocks), workdir) as gw:
        _fail(mocks, "v2", "v3")
        with BackgroundLoad(gw.base, lambda i: CHAT_BODY, threads=THREADS) as bg:
            time.sleep(3.5)  # initial ejections, then 1 s and 2 s ejections with failing probes
            results = bg.stop()
        metrics = scrape(gw)
    assert len(results) > 300
    assert [r for r in results if not r.ok] == []
    assert {r.version for r in results} == {"v1"}
    assert mocks["v1"].stats()["errors_sent"] == 0
    for vid in ("v2", "v3"):
        assert metrics.value("gateway_ejections_total", model="chat", version=vid) >= 2
    assert metrics.value("gateway_ejections_total", model="chat", version="v1") == 0
    assert metrics.value("gateway_panic_mode", model="chat") == 0


def _requests(mocks: dict[str, Mock]) -> dict[str, int]:
    return {vid: mock.stats()["requests"] for vid, mock in mocks.items()}


async def test_r3c_all_failing_panic_route_keeps_routing_by_weight(
    mocks: dict[str, Mock], workdir: Path
) -> None:
    with gateway(_config(mocks, panic="route", base_s=30), workdir) as gw:
        _fail(mocks, *VIDS)
        await load(gw.base, 100, THREADS, lambda i: CHAT_BODY)
        metrics = scrape(gw)
        assert metrics.value("gateway_panic_mode", model="chat") == 1
        assert metrics.value("gateway_ejections_total", model="chat") == 2  # never the last one

        before, retried = _requests(mocks), metrics.value("gateway_retries_total")
        results = await load(gw.base, 150, 1, lambda i: CHAT_BODY)
        delta = {vid: n - before[vid] for vid, n in _requests(mocks).items()}
        retries = scrape(gw).value("gateway_retries_total") - retried
        # in panic every request is still attempted, on every version (health is ignored)
        assert all(r.status == 500 for r in results)
        assert sum(delta.values()) == len(results) + retries
        assert min(delta.values()) > 0

        _fail(mocks, *VIDS, rate=0.0)
        healed = await load(gw.base, 30, 1, lambda i: CHAT_BODY)
        assert all(r.ok for r in healed)
        assert scrape(gw).value("gateway_panic_mode", model="chat") == 0


async def test_r3c_all_failing_panic_fail_answers_503_fast(
    mocks: dict[str, Mock], workdir: Path
) -> None:
    with gateway(_config(mocks, panic="fail", base_s=30), workdir) as gw:
        _fail(mocks, *VIDS)
        await load(gw.base, 100, THREADS, lambda i: CHAT_BODY)
        assert scrape(gw).value("gateway_panic_mode", model="chat") == 1
        before = sum(_requests(mocks).values())
        fast, probes = [], 0
        started = time.monotonic()
        async with RawClient(gw.port) as raw:
            for _ in range(150):
                await asyncio.sleep(0.01)
                resp = await raw.post({"model": "chat"})
                if resp.status == 503:
                    assert b"no_healthy_version" in resp.body
                    assert int(resp.headers["retry-after"]) >= 1
                    fast.append(resp.elapsed)
                else:
                    assert resp.status == 500
                    probes += 1
        window = time.monotonic() - started
        assert len(fast) >= 140 and percentile(fast, 0.99) <= 0.050
        assert 1 <= probes <= window + 1
        assert sum(_requests(mocks).values()) - before == probes
        rejected = scrape(gw).value("gateway_rejected_total", reason="no_healthy_version")
        assert rejected >= len(fast)
