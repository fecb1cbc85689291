"""S1 (mid-stream cut, empty stream, no retry after the first byte) and S3 (TTFT / idle timeouts).

Scaled down to CI from the full-size scenario (its numbers in parentheses):
- S1: 50-chunk streams cut after chunk 10, as at full size; 100 trials for the mock's clean cut,
  50 for each fault-proxy variant (RST after chunk 10's bytes; an empty `text/event-stream`
  body, injected on v1 only by the proxy adding `x-mock-fault: empty`; headers then close; RST
  before headers). Ejection is disabled on this gateway so the repeated cuts on v1 do not eject it
  (R3 covers ejection); routing is v1 100 / v2 0 / v3 0, so any request reaching v2 or v3 is
  a retry. The gateway exposes no `gateway_stream_aborts_total`; the cut shows as
  `gateway_requests_total{outcome="stream_cut"}`, and no per-trial traceback may be logged.
- S3: timeouts scaled down to `ttft_s: 0.5`, `idle_s: 0.5` (full size: 2 s / 3 s); windows are
  [timeout, timeout + 0.4 s]. The keepalive-comment case (d) is not tested: the gateway sends
  no SSE keepalives.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faultproxy import FaultProxy, fault_proxy
from tests.resilience import Result, chat_config, scrape, send
from tests.support import Gateway, Mock, gateway, mock_upstream

VIDS = ("v1", "v2", "v3")
TTFT_S = IDLE_S = 0.5
MARGIN_S = 0.4
LONG = {"x-mock-fault": "chunks:50"}


@pytest.fixture(scope="module")
def mocks(workdir: Path) -> Iterator[dict[str, Mock]]:
    with (
        mock_upstream("up-v1", log_dir=workdir) as one,
        mock_upstream("up-v2", log_dir=workdir) as two,
        mock_upstream("up-v3", log_dir=workdir) as three,
    ):
        yield dict(zip(VIDS, (one, two, three), strict=True))


@pytest.fixture(scope="module")
def v1_proxy(mocks: dict[str, Mock]) -> Iterator[FaultProxy]:
    with fault_proxy(mocks["v1"].port) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def gw(mocks: dict[str, Mock], v1_proxy: FaultProxy, workdir: Path) -> Iterator[Gateway]:
    urls = {"v1": v1_proxy.url, "v2": mocks["v2"].url, "v3": mocks["v3"].url}
    routing: dict[str, Any] = {
        "timeouts": {"ttft_s": TTFT_S, "idle_s": IDLE_S, "connect_s": 1.0},
        "ejection": {"enabled": False},
        "fallback": ["v2", "v3"],  # weight 0 is idle: retries go only where `fallback` says
    }
    weights = {"v1": 100, "v2": 0, "v3": 0}
    config = chat_config(urls, weights, **routing)
    retrying = chat_config(urls, weights, **routing)["models"]["chat"]
    retrying["routing"]["retry"] = {"on": ["connect", "reset", "5xx", "timeout"]}
    config["models"]["chat-t"] = retrying
    with gateway(config, workdir) as g:
        yield g
        assert "Traceback" not in g.log()


@pytest.fixture
async def client(gw: Gateway, v1_proxy: FaultProxy) -> AsyncIterator[httpx.AsyncClient]:
    v1_proxy.passthrough()
    async with httpx.AsyncClient(base_url=gw.base, timeout=10) as c:
        yield c
    v1_proxy.passthrough()


def _requests(mocks: dict[str, Mock]) -> dict[str, int]:
    return {vid: m.stats()["requests"] for vid, m in mocks.items()}


async def _reference(mock: Mock, vid: str) -> list[bytes]:
    """A healthy 50-chunk stream straight from `mock`, split into its SSE events."""
    async with httpx.AsyncClient(timeout=10) as c:
        resp = await c.post(
            f"{mock.url}/chat/completions",
            json={"model": f"up-{vid}", "stream": True},
            headers=LONG,
        )
    assert resp.status_code == 200
    return [block + b"\n\n" for block in resp.content.split(b"\n\n") if block]


async def _raw_response(port: int) -> bytes:
    """The exact bytes the upstream sends for a 50-chunk stream (head + chunked body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"model": "up-v1", "stream": True}).encode()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: up\r\ncontent-type: application/json\r\n"
        b"x-mock-fault: chunks:50\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body)
    )
    raw = b""
    while not raw.endswith(b"\r\n0\r\n\r\n"):
        raw += await reader.read(65536)
    writer.close()
    await writer.wait_closed()
    return raw


def _assert_cut_after(result: Result, expected: list[bytes]) -> None:
    """200, the expected events byte for byte and once, then one error event; no `[DONE]`."""
    assert result.status == 200 and not result.error
    prefix = b"".join(expected)
    assert result.body.startswith(prefix)
    tail = result.body[len(prefix) :]
    assert tail.startswith(b"data: ") and tail.endswith(b"\n\n") and tail.count(b"\n\n") == 1
    error = json.loads(tail[6:])["error"]
    assert error["code"] == "upstream_disconnect"
    assert not result.done and b"[DONE]" not in result.body


@pytest.mark.parametrize("via", ["mock-clean-cut", "proxy-rst"])
async def test_s1_mid_stream_cut_ends_in_band_and_is_never_retried(
    gw: Gateway,
    mocks: dict[str, Mock],
    v1_proxy: FaultProxy,
    client: httpx.AsyncClient,
    via: str,
) -> None:
    reference = await _reference(mocks["v1"], "v1")
    assert len(reference) == 52 and reference[-1] == b"data: [DONE]\n\n"
    if via == "mock-clean-cut":
        trials, headers = 100, {"x-mock-fault": "chunks:50,cut:10"}
    else:
        trials, headers = 50, LONG
        raw = await _raw_response(mocks["v1"].port)
        end = -1
        for _ in range(10):  # the end of the 10th event's HTTP chunk
            end = raw.index(b"\n\n\r\n", end + 1)
        v1_proxy.cut_after_bytes(end + 4, reset=True)
    before, metrics = _requests(mocks), scrape(gw)
    for _ in range(trials):
        result = await send(client, {"model": "chat", "stream": True}, headers)
        _assert_cut_after(result, reference[:10])
    after, end_metrics = _requests(mocks), scrape(gw)
    assert after["v1"] - before["v1"] == trials
    assert after["v2"] == before["v2"] and after["v3"] == before["v3"]  # no retry after a byte

    def delta(name: str, **labels: str) -> float:
        return end_metrics.value(name, **labels) - metrics.value(name, **labels)

    assert delta("gateway_requests_total", version="v1", outcome="stream_cut") == trials
    assert delta("gateway_retries_total") == 0


@pytest.mark.parametrize("fault", ["empty-stream", "headers-then-close", "rst-before-headers"])
async def test_s1_nothing_sent_yet_is_retried_on_another_version(
    gw: Gateway,
    mocks: dict[str, Mock],
    v1_proxy: FaultProxy,
    client: httpx.AsyncClient,
    fault: str,
) -> None:
    trials = 50
    reference = await _reference(mocks["v2"], "v2")
    if fault == "empty-stream":  # v1 answers 200 text/event-stream with an empty body
        v1_proxy.inject_header("x-mock-fault", "empty")
    elif fault == "headers-then-close":  # v1's head arrives, then the connection closes
        v1_proxy.cut_after_headers()
    else:
        v1_proxy.reset()
    before, metrics = _requests(mocks), scrape(gw)
    for _ in range(trials):
        result = await send(client, {"model": "chat", "stream": True}, LONG)
        assert result.ok and result.version == "v2"
        assert result.body == b"".join(reference)  # complete, once, byte for byte
    after, end_metrics = _requests(mocks), scrape(gw)
    forwarded = 0 if fault == "rst-before-headers" else trials
    assert after["v1"] - before["v1"] == forwarded  # the proxy never relays a reset request
    assert after["v2"] - before["v2"] == trials and after["v3"] == before["v3"]
    reset_retries = end_metrics.value("gateway_retries_total", reason="reset")
    assert reset_retries - metrics.value("gateway_retries_total", reason="reset") == trials


async def test_s1_empty_stream_on_a_pinned_request_is_502(
    mocks: dict[str, Mock], client: httpx.AsyncClient
) -> None:
    before = _requests(mocks)
    for _ in range(10):
        result = await send(client, {"model": "chat@v1", "stream": True}, {"x-mock-fault": "empty"})
        assert result.status == 502 and result.elapsed < 1.0
    after = _requests(mocks)
    assert after["v1"] - before["v1"] == 10 and after["v2"] == before["v2"]


async def _disconnects_after(mock: Mock, before: int, within: float) -> int:
    for _ in range(int(within / 0.02)):
        now = int(mock.stats()["disconnects"])
        if now > before:
            return now - before
        await asyncio.sleep(0.02)
    return 0


@pytest.mark.parametrize(
    ("stream", "fault"), [(True, "ttft:3000"), (False, "latency:3000")], ids=["stream", "plain"]
)
async def test_s3_ttft_timeout_is_504_in_its_window_and_frees_the_upstream(
    mocks: dict[str, Mock], client: httpx.AsyncClient, stream: bool, fault: str
) -> None:
    before = int(mocks["v1"].stats()["disconnects"])
    result = await send(client, {"model": "chat@v1", "stream": stream}, {"x-mock-fault": fault})
    assert result.status == 504
    assert json.loads(result.body)["error"]["code"] == "upstream_timeout"
    assert TTFT_S <= result.elapsed <= TTFT_S + MARGIN_S
    assert await _disconnects_after(mocks["v1"], before, 1.0) == 1


async def test_s3_ttft_timeout_is_retried_when_timeout_is_in_retry_on(
    mocks: dict[str, Mock], v1_proxy: FaultProxy, client: httpx.AsyncClient
) -> None:
    v1_proxy.latency(2000)  # v1 only: the request reaches it 2 s late
    before = _requests(mocks)
    for stream in (True, False):
        result = await send(client, {"model": "chat-t", "stream": stream})
        assert result.ok and result.version == "v2"
        assert TTFT_S <= result.elapsed <= TTFT_S + MARGIN_S
    after = _requests(mocks)
    assert after["v2"] - before["v2"] == 2 and after["v3"] == before["v3"]


async def test_s3_idle_stall_mid_stream_ends_with_a_timeout_event(
    mocks: dict[str, Mock], client: httpx.AsyncClient
) -> None:
    before = int(mocks["v1"].stats()["disconnects"])
    result = await send(
        client, {"model": "chat@v1", "stream": True}, {"x-mock-fault": "stall-after:3"}
    )
    assert result.status == 200 and not result.done
    events = result.events()
    assert len(events) == 4 and json.loads(events[-1])["error"]["code"] == "upstream_timeout"
    assert result.chunks[-1].count(b"data:") == 1  # the error event arrived on its own
    gap = result.chunk_times[-1] - result.chunk_times[-2]
    assert IDLE_S - 0.05 <= gap <= IDLE_S + MARGIN_S
    assert await _disconnects_after(mocks["v1"], before, 1.0) == 1


async def test_s3_healthy_stream_longer_than_every_timeout_completes(
    client: httpx.AsyncClient,
) -> None:
    fault: dict[str, Any] = {"x-mock-fault": "chunks:12,chunk-delay:150"}
    result = await send(client, {"model": "chat@v1", "stream": True}, fault)
    assert result.ok and len(result.events()) == 14  # 12 chunks, stop, [DONE]
    assert result.elapsed > 3 * IDLE_S and result.elapsed > 3 * TTFT_S
    gaps = [b - a for a, b in zip(result.chunk_times, result.chunk_times[1:], strict=False)]
    assert max(gaps) < IDLE_S
