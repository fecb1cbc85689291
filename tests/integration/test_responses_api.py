"""The Responses API through two gateway replicas sharing one real redis-server, driven by the
official `openai` SDK: create (streamed and not), follow-ups with `previous_response_id` under a
90/10 split (every follow-up must land on the version that created its predecessor, whichever
replica it reaches), and GET / input_items / cancel / DELETE of an id on the other replica."""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.redis_harness import RedisServer, redis_server
from tests.support import Gateway, Mock, gateway, version

CONVERSATIONS = 200
TURNS = 3  # a create and two follow-ups, alternately on each replica
MOCK_MODEL = {"v1": "up-one", "v2": "up-two"}


def config(one: Mock, two: Mock, redis_url: str) -> dict[str, Any]:
    return {
        "store": {"backend": "redis", "redis_url": redis_url},
        "logging": {"access": False},
        "drain": {"window_s": 0, "deadline_s": 2},
        "models": {
            "chat": {
                "versions": {"v1": version(one.url, one.model), "v2": version(two.url, two.model)},
                "routing": {"weights": {"v1": 90, "v2": 10}},
            }
        },
    }


@pytest.fixture(scope="module")
def redis(workdir: Path) -> Iterator[RedisServer]:
    with redis_server(workdir / "responses") as server:
        yield server


@pytest.fixture(scope="module")
def replicas(
    mocks: tuple[Mock, Mock], redis: RedisServer, workdir: Path
) -> Iterator[tuple[Gateway, Gateway]]:
    cfg = config(*mocks, redis.url)
    with gateway(cfg, workdir) as one, gateway(cfg, workdir) as two:
        yield one, two


def sdk(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key="k", max_retries=0)


def creator(rid: str) -> str:
    """The version whose mock created `rid` (the mock puts its model name in its ids)."""
    match = re.match(r"resp_(up-one|up-two)_", rid)
    assert match, rid
    return {"up-one": "v1", "up-two": "v2"}[match.group(1)]


def test_create_non_stream(replicas: tuple[Gateway, Gateway]) -> None:
    raw = sdk(replicas[0]).responses.with_raw_response.create(model="chat", input="hi")
    response = raw.parse()
    served = raw.headers["x-gateway-version"]
    assert creator(response.id) == served
    assert response.model == MOCK_MODEL[served]  # the upstream's name: the model was rewritten
    assert response.output_text.strip()
    assert response.usage is not None and response.usage.input_tokens > 0


def test_create_stream_relays_typed_events(replicas: tuple[Gateway, Gateway]) -> None:
    with sdk(replicas[0]).responses.create(model="chat@v2", input="hi", stream=True) as stream:
        events = list(stream)
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == events[-1].response.output_text
    assert creator(events[0].response.id) == "v2"


async def converse(clients: list[openai.AsyncOpenAI], n: int) -> tuple[str, list[str]]:
    """One conversation: created on one replica, continued alternately on the other."""
    first = clients[n % 2]
    raw = await first.responses.with_raw_response.create(model="chat", input=f"hello {n}")
    created = raw.parse()
    owner = raw.headers["x-gateway-version"]
    assert creator(created.id) == owner
    landed, previous = [], created.id
    for turn in range(1, TURNS):
        client = clients[(n + turn) % 2]
        if turn % 2:  # streamed follow-up: the id comes from its first event
            async with await client.responses.create(
                model="chat", input="more", previous_response_id=previous, stream=True
            ) as stream:
                events = [event async for event in stream]
            assert events[-1].type == "response.completed"
            reply = events[-1].response
        else:
            reply = await client.responses.create(
                model="chat", input="more", previous_response_id=previous
            )
        assert reply.previous_response_id == previous
        landed.append(creator(reply.id))
        previous = reply.id
    return owner, landed


def test_follow_ups_land_on_the_creating_version_across_replicas(
    replicas: tuple[Gateway, Gateway],
) -> None:
    async def run() -> list[tuple[str, list[str]]]:
        clients = [openai.AsyncOpenAI(base_url=g.url, api_key="k", max_retries=0) for g in replicas]
        limit = asyncio.Semaphore(16)

        async def one(n: int) -> tuple[str, list[str]]:
            async with limit:
                return await converse(clients, n)

        try:
            return await asyncio.gather(*(one(n) for n in range(CONVERSATIONS)))
        finally:
            for client in clients:
                await client.close()

    results = asyncio.run(run())
    for owner, landed in results:
        assert landed == [owner] * (TURNS - 1)  # never the other version
    owners = Counter(owner for owner, _ in results)
    # the split still applies to new conversations: 10 % ± 5 standard deviations
    sd = math.sqrt(CONVERSATIONS * 0.1 * 0.9)
    assert abs(owners["v2"] - CONVERSATIONS * 0.1) <= 5 * sd, owners
    assert owners["v1"] + owners["v2"] == CONVERSATIONS


def test_calls_on_an_id_reach_its_version_from_the_other_replica(
    replicas: tuple[Gateway, Gateway],
) -> None:
    one, two = replicas
    created = sdk(one).responses.create(model="chat@v2", input="keep me")
    other = sdk(two)
    raw = other.responses.with_raw_response.retrieve(created.id)
    assert raw.headers["x-gateway-version"] == "v2"
    assert raw.parse().id == created.id
    items = other.responses.input_items.list(created.id)
    assert items.data and items.data[0].type == "message"
    cancelled = other.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    deleted = httpx.delete(f"{two.url}/responses/{created.id}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        sdk(one).responses.create(model="chat", input="again", previous_response_id=created.id)


def test_unknown_id_is_a_clear_404(replicas: tuple[Gateway, Gateway]) -> None:
    resp = httpx.get(f"{replicas[0].url}/responses/resp_never_made")
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["code"] == "response_not_found" and "resp_never_made" in error["message"]
    follow = httpx.post(
        f"{replicas[1].url}/responses",
        json={"model": "chat", "input": "x", "previous_response_id": "resp_never_made"},
    )
    assert follow.status_code == 404 and follow.json()["error"]["code"] == "response_not_found"
    wrong = httpx.put(f"{replicas[0].url}/responses/resp_never_made")
    assert wrong.status_code == 405 and "GET" in wrong.headers["allow"]


def test_cut_stream_ends_with_an_error_event(replicas: tuple[Gateway, Gateway]) -> None:
    client = sdk(replicas[0])
    fault = {"x-mock-fault": "cut:3"}
    stream = client.responses.create(model="chat@v1", input="hi", stream=True, extra_headers=fault)
    with pytest.raises(openai.APIError, match="upstream"), stream:
        for _ in stream:
            pass


def test_usage_is_counted_from_the_responses_shape(replicas: tuple[Gateway, Gateway]) -> None:
    gw = replicas[1]
    before = tokens(gw)
    created = sdk(gw).responses.create(model="chat@v1", input="count me")
    assert created.usage is not None
    with sdk(gw).responses.create(model="chat@v1", input="count me", stream=True) as stream:
        last = list(stream)[-1]
    assert last.type == "response.completed" and last.response.usage is not None
    sdk(gw).responses.retrieve(created.id)  # a GET repeats usage: never counted again
    expected = created.usage.output_tokens + last.response.usage.output_tokens
    assert tokens(gw) - before == expected


def tokens(gw: Gateway) -> float:
    """gateway_tokens_total of chat@v1's completion tokens."""
    text = httpx.get(f"{gw.base}/metrics").text
    total = 0.0
    for line in text.splitlines():
        labels = 'version="v1"' in line and 'kind="completion"' in line
        if line.startswith("gateway_tokens_total{") and labels:
            total += float(line.rsplit(" ", 1)[1])
    return total
