"""Error statuses, timeouts, disconnect propagation, header hygiene and metrics, end to end."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
from scipy.stats import binomtest

from tests.support import Gateway, Mock, wait_for

CHAT = "/v1/chat/completions"


def post(
    gw: Gateway, body: object, headers: dict[str, str] | None = None, **kw: object
) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        gw.base + CHAT,
        content=data,
        headers={"content-type": "application/json", **(headers or {})},
        timeout=10,
        **kw,
    )  # type: ignore[arg-type]


def error_of(resp: httpx.Response) -> dict[str, object]:
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return dict(err)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        ({"messages": []}, 400, "'model' is required"),
        ({"model": 5}, 400, "'model' is required"),
        ({"model": "nope"}, 404, "known models: chat, down"),
        ({"model": "chat@v7"}, 404, "has no version or alias 'v7'"),
    ],
)
def test_bad_requests(gw: Gateway, body: object, status: int, fragment: str) -> None:
    resp = post(gw, body)
    assert resp.status_code == status
    assert fragment in str(error_of(resp)["message"])
    assert resp.headers["x-request-id"]


def test_declared_body_too_large_is_413_without_reading(gw: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 9000000\r\n\r\n{"
        )
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413")


def test_chunked_body_too_large_is_413_while_reading(gw: Gateway) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"model": "chat", "pad": "'
        for _ in range(20):
            yield b"x" * (1 << 20)

    resp = httpx.post(gw.base + CHAT, content=chunks(), timeout=10)
    assert resp.status_code == 413
    assert error_of(resp)["code"] == "request_too_large"


def test_upstream_down_is_502_fast(gw: Gateway) -> None:
    started = time.monotonic()
    resp = post(gw, {"model": "down", "messages": []})
    assert resp.status_code == 502
    assert time.monotonic() - started < 0.5
    assert error_of(resp)["code"] == "upstream_connect_failed"
    assert resp.headers["x-gateway-version"] == "v1"


@pytest.mark.parametrize("stream", [False, True])
def test_stalled_upstream_is_504_at_the_ttft_timeout(gw: Gateway, stream: bool) -> None:
    started = time.monotonic()
    resp = post(gw, {"model": "chat@v1", "stream": stream}, {"x-mock-fault": "stall"})
    elapsed = time.monotonic() - started
    assert resp.status_code == 504
    assert 0.9 < elapsed < 1.6  # ttft_s is 1.0 in this gateway's config
    assert error_of(resp)["code"] == "upstream_timeout"


def test_stream_stalled_midway_ends_with_an_error_event(gw: Gateway) -> None:
    started = time.monotonic()
    with httpx.stream(
        "POST",
        gw.base + CHAT,
        json={"model": "chat@v1", "stream": True},
        headers={"x-mock-fault": "stall-after:2"},
        timeout=10,
    ) as resp:
        assert resp.status_code == 200
        events = [line for line in resp.iter_lines() if line.startswith("data:")]
    assert len(events) == 3 and "[DONE]" not in events[-1]
    assert json.loads(events[-1][5:])["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 2.0  # idle_s is 1.0


def test_empty_stream_is_502(gw: Gateway) -> None:
    resp = post(gw, {"model": "chat@v1", "stream": True}, {"x-mock-fault": "empty"})
    assert resp.status_code == 502


def test_upstream_error_status_is_relayed(gw: Gateway) -> None:
    resp = post(gw, {"model": "chat@v1"}, {"x-mock-fault": "fail:503"})
    assert resp.status_code == 503
    assert resp.headers["x-gateway-version"] == "v1"
    assert "error" in resp.json()


async def _disconnect_after(
    gw: Gateway, mock: Mock, body: dict[str, object], fault: str, read_events: int
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    data = json.dumps(body).encode()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + f"x-mock-fault: {fault}\r\ncontent-length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()
    if read_events:
        seen = 0
        while seen < read_events:
            seen += (await reader.readuntil(b"\n\n")).count(b"data:")
    else:  # until the request is waiting on the upstream
        await asyncio.to_thread(wait_for, lambda: mock.stats()["inflight"], 5)
    writer.transport.abort()


@pytest.mark.parametrize(
    ("stream", "fault", "read_events"),
    [(True, "ttft:5000", 0), (True, "chunk-delay:300,chunks:60", 3), (False, "latency:5000", 0)],
    ids=["waiting-for-ttft", "mid-stream", "non-streamed"],
)
async def test_client_disconnect_closes_the_upstream(
    gw: Gateway, mocks: tuple[Mock, Mock], stream: bool, fault: str, read_events: int
) -> None:
    one = mocks[0]
    before = one.stats()["disconnects"]
    await _disconnect_after(gw, one, {"model": "chat@v1", "stream": stream}, fault, read_events)
    closed_at = time.time()
    stats = await asyncio.to_thread(
        wait_for, lambda: (s := one.stats())["disconnects"] > before and s, 2, what="disconnect"
    )
    assert stats["disconnects"] == before + 1
    assert stats["disconnect_times"][-1] - closed_at < 1.0


def test_headers_that_must_not_pass(gw: Gateway, mocks: tuple[Mock, Mock]) -> None:
    two = mocks[1]
    resp = post(
        gw,
        {"model": "chat@v2"},
        {
            "authorization": "Bearer client-secret",
            "x-api-key": "client-secret",
            "connection": "keep-alive, x-secret-hop",
            "x-secret-hop": "1",
            "te": "trailers",
            "proxy-authorization": "Basic abc",
            "cookie": "session=1",
            "x-forwarded-for": "6.6.6.6",
            "x-request-id": "trace-123",
            "x-custom": "not on the allow-list",
            "x-forwarded-server": "evil",
            "via": "1.1 evil",
            "true-client-ip": "6.6.6.6",
            "x-original-url": "/admin",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "openai-beta": "assistants=v2",
        },
    )
    assert resp.status_code == 200
    seen = two.stats()["last_headers"]
    for name in (
        "x-api-key",
        "x-secret-hop",
        "te",
        "proxy-authorization",
        "cookie",
        "x-forwarded-for",
        "x-custom",
        "x-forwarded-server",
        "via",
        "true-client-ip",
        "x-original-url",
    ):
        assert name not in seen
    assert seen["authorization"] == "Bearer sk-upstream-v2"  # injected upstream credential
    assert seen["x-request-id"] == "trace-123" == resp.headers["x-request-id"]
    assert seen["traceparent"].startswith("00-0af7") and seen["openai-beta"] == "assistants=v2"
    assert seen["accept-encoding"] == "identity"
    assert seen["host"] == f"127.0.0.1:{two.port}"
    assert two.stats()["last_body"]["model"] == "up-two"
    assert "set-cookie" not in resp.headers and "server" not in resp.headers


def test_weighted_split_matches_configured_weights(gw: Gateway) -> None:
    n, served = 1500, 0
    with httpx.Client(base_url=gw.base, timeout=10) as client:
        for _ in range(n):
            r = client.post(CHAT, json={"model": "chat", "messages": []})
            served += r.headers["x-gateway-version"] == "v2"
    # exact binomial test of the configured 30 % share at a tiny alpha
    assert binomtest(served, n, 0.30).pvalue > 1e-6


def test_metrics_use_config_labels_only(gw: Gateway) -> None:
    for i in range(20):
        post(gw, {"model": f"junk-{i}"})
    post(gw, {"model": "chat@v1"})
    text = httpx.get(gw.base + "/metrics").text
    assert (
        'gateway_requests_total{key="anonymous",model="chat",outcome="success",version="v1"}'
        in text
    )
    assert "junk" not in text
    assert (
        'gateway_requests_total{key="anonymous",model="other",outcome="client_error",version="none"}'
        in text
    )
    assert 'gateway_routing_weight{model="chat",version="v2"} 0.3' in text
    assert "process_resident_memory_bytes" in text


def test_health_and_readiness(gw: Gateway) -> None:
    assert httpx.get(gw.base + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gw.base + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    missing = httpx.get(gw.base + "/v1/nothing")
    assert missing.status_code == 404 and "error" in missing.json()
