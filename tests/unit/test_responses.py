"""The Responses API's state and routing, deterministic: the id → version index (TTL, eviction,
a failing shared store), id paths, learning ids from answers, follow-ups pinned to their
creator, calls by id, and the typed event stream's end and usage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from random import Random
from typing import Any

import httpx
import orjson
import pytest

from gateway.app import App, create_app
from gateway.config import parse_config
from gateway.errors import StoreUnavailable
from gateway.exchange import STREAM_CUT, SUCCESS, Exchange
from gateway.infra.breaker import Breaker
from gateway.livestats.responses import RedisIds, ResponseIndex
from gateway.proxy.deadline import DeadlineWheel
from gateway.proxy.responses import split_path
from gateway.proxy.sse import SseRelay
from tests.fakes import FakeResponse, FakeTransport
from tests.samples import ENV, GOOD
from tests.support import ManualClock

JSON = [(b"content-type", b"application/json")]


class FailingShared:
    """A shared store that is down."""

    async def put(self, rid: str, owner: tuple[str, str], ttl_s: int) -> None:
        raise StoreUnavailable("down")

    async def get(self, rid: str) -> tuple[str, str] | None:
        raise StoreUnavailable("down")

    async def delete(self, rid: str) -> None:
        raise StoreUnavailable("down")


async def test_index_expires_and_evicts_oldest() -> None:
    clock = ManualClock()
    index = ResponseIndex(ttl_s=60, local_entries=2, clock=clock)
    await index.remember("a", ("chat", "v1"))
    await index.remember("b", ("chat", "v2"))
    assert await index.lookup("a") == ("chat", "v1")
    await index.remember("c", ("chat", "v1"))  # evicts the oldest, "a"
    assert await index.lookup("a") is None and len(index) == 2
    clock.now += 61
    assert await index.lookup("b") is None  # expired
    await index.forget("c")
    assert await index.lookup("c") is None


async def test_index_with_a_failing_shared_store() -> None:
    index = ResponseIndex(60, 10, ManualClock(), FailingShared())  # type: ignore[arg-type]
    await index.remember("a", ("chat", "v1"))  # never raises; counted
    assert index.errors["write"] == 1
    assert await index.lookup("a") == ("chat", "v1")  # still known here
    with pytest.raises(StoreUnavailable):
        await index.lookup("b")  # unknown here, and the shared store cannot say


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/responses/resp_1", ("resp_1", "")),
        ("/v1/responses/resp_1/cancel", ("resp_1", "/cancel")),
        ("/v1/responses/resp_1/input_items", ("resp_1", "/input_items")),
        ("/v1/responses/resp_1/other", None),
        ("/v1/responses/", None),
        ("/v1/responses/a b", None),
        ("/v1/responses/" + "x" * 300, None),
    ],
)
def test_split_path(path: str, expected: tuple[str, str] | None) -> None:
    assert split_path(path) == expected


@pytest.fixture
def app() -> App:
    gw = create_app(parse_config(GOOD, ENV), ENV, rng=Random(1))
    gw.parts.forwarder.transport = FakeTransport()
    return gw


def transport(app: App) -> FakeTransport:
    fake = app.parts.forwarder.transport
    assert isinstance(fake, FakeTransport)
    return fake


async def call(app: App, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        return await c.request(method, path, **kwargs)


def answers(app: App, rid: str) -> None:
    """Every upstream call answers a stored Response `rid` with usage."""
    body = orjson.dumps(
        {"id": rid, "object": "response", "usage": {"input_tokens": 5, "output_tokens": 2}}
    )
    transport(app).answer = lambda url: FakeResponse(200, JSON, [body])


async def test_create_remembers_the_id_and_follow_ups_go_to_its_version(app: App) -> None:
    answers(app, "resp_x")
    resp = await call(app, "POST", "/v1/responses", json={"model": "chat@v2", "input": "hi"})
    assert resp.status_code == 200 and resp.headers["x-gateway-version"] == "v2"
    assert await app.parts.responses.lookup("resp_x") == ("chat", "v2")
    for _ in range(20):  # the 90/10 weights never move a follow-up off v2
        follow = {"model": "chat", "input": "more", "previous_response_id": "resp_x"}
        resp = await call(app, "POST", "/v1/responses", json=follow)
        assert resp.headers["x-gateway-version"] == "v2"
    assert all(url == "http://127.0.0.1:9002/v1/responses" for url, _, _ in transport(app).calls)


async def test_store_false_is_not_remembered(app: App) -> None:
    answers(app, "resp_gone")
    body = {"model": "chat", "input": "hi", "store": False}
    assert (await call(app, "POST", "/v1/responses", json=body)).status_code == 200
    assert await app.parts.responses.lookup("resp_gone") is None


@pytest.mark.parametrize(
    ("owner", "body", "status", "code"),
    [
        (None, {"model": "chat", "previous_response_id": "resp_y"}, 404, "response_not_found"),
        (("chat", "v9"), {"model": "chat", "previous_response_id": "resp_y"}, 404,
         "response_version_gone"),
        (("other", "v1"), {"model": "chat", "previous_response_id": "resp_y"}, 400, "bad_request"),
        (("chat", "v1"), {"model": "chat@v2", "previous_response_id": "resp_y"}, 400,
         "bad_request"),
        (None, {"model": "chat", "previous_response_id": 7}, 400, "bad_request"),
    ],
)  # fmt: skip
async def test_follow_up_errors(
    app: App, owner: tuple[str, str] | None, body: dict[str, Any], status: int, code: str
) -> None:
    if owner is not None:
        await app.parts.responses.remember("resp_y", owner)
    resp = await call(app, "POST", "/v1/responses", json=body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"
    assert transport(app).calls == []  # nothing reached an upstream


async def test_calls_by_id_reach_the_creating_version(app: App) -> None:
    await app.parts.responses.remember("resp_z", ("chat", "v1"))
    answers(app, "resp_z")
    got = await call(app, "GET", "/v1/responses/resp_z", params={"include[]": "x"})
    assert got.status_code == 200 and got.headers["x-gateway-version"] == "v1"
    await call(app, "POST", "/v1/responses/resp_z/cancel")
    await call(app, "GET", "/v1/responses/resp_z/input_items")
    deleted = await call(app, "DELETE", "/v1/responses/resp_z")
    assert deleted.status_code == 200
    sent = [(m, url, body) for m, url, _, body in transport(app).requests]
    base = "http://127.0.0.1:9001/v1/responses/resp_z"
    assert sent == [
        ("GET", base + "?include%5B%5D=x", None),
        ("POST", base + "/cancel", b""),
        ("GET", base + "/input_items", None),
        ("DELETE", base, None),
    ]
    assert await app.parts.responses.lookup("resp_z") is None  # forgotten after the delete
    gone = await call(app, "GET", "/v1/responses/resp_z")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "response_not_found"


async def test_wrong_method_on_an_id_is_405(app: App) -> None:
    resp = await call(app, "GET", "/v1/responses/resp_z/cancel")
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"
    assert (await call(app, "GET", "/v1/responses/a/b")).status_code == 404


async def test_undeclared_endpoint_is_404_before_any_upstream_call(app: App) -> None:
    resp = await call(app, "POST", "/v1/images/generations", json={"model": "chat", "prompt": "x"})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "endpoint_not_supported"
    assert transport(app).calls == []


async def events(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def typed(kind: str, **fields: Any) -> bytes:
    data = orjson.dumps({"type": kind, **fields})
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


CREATED = typed("response.created", response={"id": "r", "object": "response", "usage": None})
DELTA = typed("response.output_text.delta", delta="hi")
COMPLETED = typed(
    "response.completed",
    response={"id": "r", "usage": {"input_tokens": 9, "output_tokens": 4}, "metadata": {}},
)


async def relay(*chunks: bytes) -> tuple[Exchange, bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    loop = asyncio.get_running_loop()
    ex = Exchange("rid", "/v1/responses", loop.time())
    deadline = DeadlineWheel().start(60, 5, 60)
    deadline.idle()
    try:
        await SseRelay(ex, send, loop.time, False).run(chunks[0], events(*chunks[1:]), deadline)
    finally:
        deadline.stop()
    return ex, b"".join(m["body"] for m in sent)


async def test_typed_stream_ends_at_response_completed_with_its_usage() -> None:
    ex, body = await relay(CREATED, DELTA, COMPLETED)
    assert body == CREATED + DELTA + COMPLETED  # relayed as it came, no [DONE] needed
    assert ex.outcome == SUCCESS
    assert (ex.prompt_tokens, ex.completion_tokens) == (9, 4)


async def test_typed_stream_cut_before_its_terminal_event_ends_with_an_error() -> None:
    ex, body = await relay(CREATED, DELTA)
    assert ex.outcome == STREAM_CUT
    assert body.startswith(CREATED + DELTA) and b'"error"' in body[len(CREATED + DELTA) :]


class DeadRedis:
    """A redis client whose every call fails; counts the calls that reached it."""

    def __init__(self) -> None:
        self.calls = 0

    async def get(self, key: str) -> bytes:
        self.calls += 1
        raise ConnectionRefusedError

    async def set(self, key: str, value: bytes, ex: int) -> None:
        self.calls += 1
        raise ConnectionRefusedError


async def test_shared_ids_stop_calling_a_failing_redis() -> None:
    clock = ManualClock()
    breaker = Breaker(2, 1.0, 10.0, Random(1), clock)
    shared = RedisIds("redis://127.0.0.1:9/0", cluster=False, prefix="gw", timeout_s=0.1,
                      breaker=breaker)  # fmt: skip
    dead = DeadRedis()
    shared._client = dead
    index = ResponseIndex(60, 10, clock, shared)
    for _ in range(5):
        await index.remember("a", ("chat", "v1"))
        with pytest.raises(StoreUnavailable):
            await index.lookup("b")
    assert dead.calls == 2  # the breaker opened after two failures; later calls fail at once
    assert index.errors == {"write": 5, "read": 5}
    clock.now += 20  # past the backoff: one probe goes through
    await index.remember("c", ("chat", "v1"))
    assert dead.calls == 3
