"""Slow request bodies: a per-key in-flight cap and a body deadline keep other keys served."""

from __future__ import annotations

import asyncio
import hashlib
from random import Random
from typing import Any

import httpx
import orjson

from gateway.app import App, create_app
from gateway.config import parse_config
from tests.fakes import FakeTransport
from tests.samples import ENV, GOOD

SLOW, OTHER = "key-slow-" + "s" * 20, "key-other-" + "o" * 20
COUNTED = "key-counted-" + "c" * 20


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


CONFIG = (
    GOOD
    + f"""
limits: {{max_inflight: 8, body_timeout_s: 0.3, max_pending_body_bytes: 1048576}}
auth:
  keys:
    - {{id: slow, sha256: "{digest(SLOW)}", rate_limit: {{requests_per_minute: 1000}}}}
    - {{id: other, sha256: "{digest(OTHER)}"}}
    - {{id: counted, sha256: "{digest(COUNTED)}", rate_limit: {{requests_per_minute: 2}}}}
"""
)


def app() -> App:
    gw = create_app(parse_config(CONFIG, ENV), ENV, rng=Random(1))
    gw.parts.forwarder.transport = FakeTransport()
    return gw


async def slow_request(gw: App, key: str, first_chunk: bytes = b"{") -> int:
    """A request whose body starts and never finishes; the status it was answered with."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"gw"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"2000000"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    first = [True]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        if first[0]:
            first[0] = False
            return {"type": "http.request", "body": first_chunk, "more_body": True}
        await asyncio.Event().wait()  # the rest never comes
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await gw(scope, receive, send)
    return statuses[0]


async def test_one_key_cannot_take_every_slot_and_slow_bodies_get_408() -> None:
    gw = app()
    slow = [asyncio.create_task(slow_request(gw, SLOW)) for _ in range(4)]  # cap: 8 // 2
    while gw.parts.endpoint.inflight < 4:  # all four heads authenticated, bodies pending
        await asyncio.sleep(0)
    refused = await slow_request(gw, SLOW)
    assert refused == 429
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as c:
        served = await c.post(
            "/v1/chat/completions",
            json={"model": "chat"},
            headers={"authorization": f"Bearer {OTHER}"},
        )
        assert served.status_code == 200
        assert await asyncio.gather(*slow) == [408] * 4
        again = await c.post(  # the slots were given back
            "/v1/chat/completions",
            json={"model": "chat"},
            headers={"authorization": f"Bearer {SLOW}"},
        )
        assert again.status_code == 200
        metrics = (await c.get("/metrics")).text
    assert 'gateway_rejected_total{reason="body_timeout"} 4.0' in metrics
    assert 'gateway_rejected_total{reason="key_inflight_limit"} 1.0' in metrics
    assert orjson.loads(served.content)  # a real answer


async def test_memory_held_by_unfinished_bodies_is_bounded() -> None:
    gw = app()
    piece = b"{" + b" " * (600 << 10)
    first = asyncio.create_task(slow_request(gw, SLOW, piece))
    while gw.parts.endpoint.pending_bodies.held == 0:
        await asyncio.sleep(0)
    assert await slow_request(gw, OTHER, piece) == 503  # 1.2 MiB would be held: refused
    assert gw.parts.endpoint.pending_bodies.held == len(piece)  # the refused one gave them back
    assert f"gateway_pending_body_bytes {float(len(piece))}" in gw.parts.metrics.scrape().decode()
    assert await first == 408
    assert gw.parts.endpoint.pending_bodies.held == 0
    assert "gateway_pending_body_bytes 0.0" in gw.parts.metrics.scrape().decode()


async def test_the_request_limit_is_charged_before_the_body_is_read() -> None:
    gw = app()
    held = [asyncio.create_task(slow_request(gw, COUNTED)) for _ in range(2)]
    while gw.parts.endpoint.pending_bodies.held < 2:
        await asyncio.sleep(0)
    assert await slow_request(gw, COUNTED) == 429  # refused on its head: its body never read
    assert await asyncio.gather(*held) == [408, 408]
