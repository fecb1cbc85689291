"""The request path with an injected transport and RNG: deterministic, no network."""

from __future__ import annotations

from random import Random
from typing import Any

import httpx
import orjson
import pytest

from gateway.app import App, create_app
from gateway.config import parse_config
from gateway.errors import UpstreamConnectError
from tests.fakes import FakeResponse, FakeTransport
from tests.samples import ENV, GOOD


@pytest.fixture
def fake() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def app(fake: FakeTransport) -> App:
    gw = create_app(parse_config(GOOD, ENV), ENV, rng=Random(5))
    gw.parts.forwarder.transport = fake
    return gw


async def call(app: App, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return await client.post("/v1/chat/completions", content=content, headers=headers or {})


async def test_forwards_with_model_rewritten_and_credentials_swapped(
    app: App, fake: FakeTransport
) -> None:
    resp = await call(
        app,
        {"model": "chat@v2", "messages": [], "temperature": 0.5},
        {"authorization": "Bearer client"},
    )
    assert (
        resp.status_code == 200
        and resp.content == b'{"ok":1,"usage":{"prompt_tokens":4,"completion_tokens":2}}'
    )
    url, headers, body = fake.calls[0]
    assert url == "http://127.0.0.1:9002/v1/chat/completions"
    assert body == {"model": "llama-ft2", "messages": [], "temperature": 0.5}
    assert headers["authorization"] == "Bearer secret"
    assert resp.headers["x-gateway-version"] == "v2" and resp.headers["content-length"] == str(
        len(resp.content)
    )
    assert fake.responses[0].released and not fake.responses[0].closed


async def test_seeded_rng_gives_a_reproducible_sequence() -> None:
    async def served(seed: int) -> list[str]:
        gw = create_app(parse_config(GOOD, ENV), ENV, rng=Random(seed))
        gw.parts.forwarder.transport = FakeTransport()
        return [(await call(gw, {"model": "chat"})).headers["x-gateway-version"] for _ in range(40)]

    first = await served(11)
    assert first == await served(11)
    assert set(first) == {"v1", "v2"}


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (UpstreamConnectError("upstream unreachable: refused"), 502, "upstream_connect_failed"),
        (FakeResponse(302, [(b"location", b"http://169.254.169.254/")], []), 502, "upstream_error"),
        (
            FakeResponse(200, [(b"content-type", b"application/json")], [b"x" * (17 << 20)]),
            502,
            "upstream_error",
        ),
        (
            FakeResponse(200, [(b"content-length", b"%d" % (17 << 20))], [b"never read"]),
            502,
            "upstream_error",
        ),
    ],
    ids=["connect", "redirect-not-followed", "answer-too-large", "declared-too-large"],
)
async def test_upstream_failures_map_to_gateway_errors(
    app: App, fake: FakeTransport, answer: Any, status: int, code: str
) -> None:
    fake.answer = lambda url: answer
    resp = await call(app, {"model": "chat@v1"})
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code
    assert "169.254" not in resp.text
    if isinstance(answer, FakeResponse):
        assert answer.closed


async def test_body_limit_counts_chunked_bodies(app: App) -> None:
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": b"x" * (5 << 20), "more_body": True}] * 3

    async def receive() -> dict[str, Any]:
        return chunks.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    await app(scope, receive, send)
    assert sent[0]["status"] == 413 and len(chunks) == 1  # stopped reading past the limit


async def test_metrics_record_outcomes_with_config_labels(app: App, fake: FakeTransport) -> None:
    await call(app, {"model": "chat@v1"})
    await call(app, {"model": "who-knows"})
    text = app.current.runtime.metrics.scrape().decode()
    assert (
        'gateway_requests_total{key="anonymous",model="chat",outcome="success",version="v1"} 1.0'
        in text
    )
    assert (
        'gateway_tokens_total{key="anonymous",kind="completion",model="chat",version="v1"} 2.0'
        in text
    )
    assert (
        'gateway_requests_total{key="anonymous",model="other",outcome="client_error",version="none"} 1.0'
        in text
    )
    assert "who-knows" not in text
