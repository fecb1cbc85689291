"""Token usage the limits rely on: asked for on streams, stripped when unasked, else estimated."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections.abc import AsyncIterator
from random import Random
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.exchange import Exchange
from gateway.proxy.usage import ask_for_usage, estimate_usage, strip_usage_events
from tests.fakes import FakeResponse, FakeTransport
from tests.samples import ENV, GOOD
from tests.streams import DONE, EVENT, USAGE, body, gen, relay


@pytest.mark.parametrize(
    ("options", "after", "strip"),
    [
        (None, {"include_usage": True}, True),
        ({"include_usage": False}, {"include_usage": True}, True),
        ({"include_usage": True}, {"include_usage": True}, False),
        ("bad", "bad", False),
    ],
)
def test_streams_ask_for_usage_and_remember_whether_the_client_did(
    options: Any, after: Any, strip: bool
) -> None:
    fields: dict[str, Any] = {"stream": True}
    if options is not None:
        fields["stream_options"] = options
    ex = Exchange("rid", "/v1/chat/completions", 0.0)
    ask_for_usage(fields, ex)
    assert fields["stream_options"] == after and ex.strip_usage is strip


def test_only_the_usage_only_chunk_is_stripped() -> None:
    with_null = b'data: {"choices":[{"delta":{}}],"usage":null}\n\n'
    assert strip_usage_events(EVENT + USAGE + DONE) == EVENT + DONE
    assert strip_usage_events(with_null) == with_null
    crlf = (EVENT + USAGE).replace(b"\n", b"\r\n")
    assert strip_usage_events(crlf) == EVENT.replace(b"\n", b"\r\n")


async def test_relay_counts_the_usage_it_strips() -> None:
    ex, sent = await relay(EVENT, gen(USAGE, DONE), strip_usage=True)
    assert body(sent) == EVENT + DONE
    assert (ex.prompt_tokens, ex.completion_tokens) == (7, 3)


def test_unknown_usage_is_estimated_never_a_default() -> None:
    ex = Exchange("rid", "/v1/chat/completions", 0.0)
    ex.request_bytes, ex.relayed_bytes = 400, 8000
    estimate_usage(ex)
    assert (ex.prompt_tokens, ex.completion_tokens) == (100, 2000)


KEY = "key-t-" + "z" * 20
TOKENS = f"""
auth:
  keys:
    - {{id: t, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}", models: ["*"],
        rate_limit: {{tokens_per_minute: 3000}}}}
"""
CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"w" * 1600 + b'"}}]}\n\n'
SSE = [(b"content-type", b"text/event-stream")]
USAGE_2000 = b'"usage":{"prompt_tokens":10,"completion_tokens":2000}'


def upstream_stream(with_usage: bool) -> FakeResponse:
    usage = b'data: {"choices":[],' + USAGE_2000 + b"}\n\n"
    return FakeResponse(200, SSE, [CHUNK * 5, *([usage] if with_usage else []), DONE])


def upstream_gzip(url: str) -> FakeResponse:
    body = gzip.compress(b'{"choices":[],' + USAGE_2000 + b"}")
    headers = [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
    return FakeResponse(200, headers, [body])


@pytest.mark.parametrize(
    ("answer", "stream"),
    [
        (lambda url: upstream_stream(False), True),  # upstream ignores include_usage
        (lambda url: upstream_stream(True), True),
        (upstream_gzip, False),  # compressed although identity was asked for
    ],
    ids=["stream-no-usage", "stream-usage", "gzip"],
)
async def test_a_token_limit_holds_whatever_the_upstream_reports(answer: Any, stream: bool) -> None:
    gw = create_app(parse_config(GOOD + TOKENS, ENV), ENV, rng=Random(1))
    fake = FakeTransport()
    fake.answer = answer
    gw.parts.forwarder.transport = fake
    headers = {"authorization": f"Bearer {KEY}"}
    request = {"model": "chat@v1", "stream": stream}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as c:
        codes = []
        for _ in range(6):
            resp = await c.post("/v1/chat/completions", json=request, headers=headers)
            codes.append(resp.status_code)
            if resp.status_code == 200 and stream:
                assert b"usage" not in resp.content  # stripped: this client did not ask for it
    # the first answer (2,000 tokens) is learnt: the next reserves as much and no longer fits
    assert codes[0] == 200 and set(codes[1:]) == {429}
    if stream:
        assert fake.calls[0][2]["stream_options"] == {"include_usage": True}


class HeldResponse(FakeResponse):
    """A JSON answer of `tokens` that starts only once `gate` is set (a request in flight)."""

    def __init__(self, gate: asyncio.Event, tokens: int) -> None:
        usage = b'"usage":{"prompt_tokens":10,"completion_tokens":%d}' % tokens
        body = b'{"choices":[],' + usage + b"}"
        super().__init__(200, [(b"content-type", b"application/json")], [body])
        self.gate = gate

    async def chunks(self) -> AsyncIterator[bytes]:
        await self.gate.wait()
        async for chunk in super().chunks():
            yield chunk

    async def read(self) -> bytes:
        await self.gate.wait()
        return await super().read()


async def test_a_burst_of_open_ended_requests_runs_one_at_a_time_while_cold() -> None:
    """Six uncapped requests at once of a key with no answer known yet: one reaches the
    upstream, five wait for it to settle, then reserve its 2,000 tokens each and are refused
    (the capped one passed them all along). Without the turns all six reserved 256 tokens each
    and all six 2,000-token answers got through."""
    gw = create_app(parse_config(GOOD + TOKENS, ENV), ENV, rng=Random(1))
    gate, fake = asyncio.Event(), FakeTransport()
    fake.answer = lambda url: HeldResponse(gate, fake.calls[-1][2].get("max_tokens", 2000))
    gw.parts.forwarder.transport = fake
    turns = gw.parts.endpoint.open_ended
    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as c:

        async def ask(request: dict[str, Any]) -> int:
            resp = await c.post("/v1/chat/completions", json=request, headers=headers)
            return resp.status_code

        burst = [asyncio.create_task(ask({"model": "chat@v1"})) for _ in range(6)]
        while turns.waiting("t") < 5:
            await asyncio.sleep(0)
        assert len(fake.calls) == 1
        capped = asyncio.create_task(ask({"model": "chat@v1", "max_tokens": 10}))
        while len(fake.calls) < 2:  # a capped request does not wait for the turn
            await asyncio.sleep(0)
        gate.set()
        codes = sorted(await asyncio.gather(*burst, capped))
    assert codes == [200, 200, 429, 429, 429, 429, 429] and turns.waiting("t") == 0
    assert not turns._turns  # every turn given back


async def test_once_a_keys_answers_are_known_its_requests_run_side_by_side() -> None:
    """After a 200-token answer, uncapped requests reserve 200 (+ prompt) each and never wait:
    five at once all reach the upstream while none has answered yet."""
    gw = create_app(parse_config(GOOD + TOKENS, ENV), ENV, rng=Random(1))
    gate, fake = asyncio.Event(), FakeTransport()
    fake.answer = lambda url: HeldResponse(gate, 200)
    gw.parts.forwarder.transport = fake
    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as c:

        async def ask() -> int:
            resp = await c.post("/v1/chat/completions", json={"model": "chat@v1"}, headers=headers)
            return resp.status_code

        gate.set()
        assert await ask() == 200  # cold: it took the turn, and taught the size
        gate.clear()
        burst = [asyncio.create_task(ask()) for _ in range(5)]
        while len(fake.calls) < 6:  # all five in flight together
            await asyncio.sleep(0)
        assert gw.parts.endpoint.open_ended.waiting("t") == 0
        gate.set()
        assert await asyncio.gather(*burst) == [200] * 5
    assert gw.parts.endpoint.open_ended.expected("t") == 200
