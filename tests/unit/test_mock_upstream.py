"""Mock upstream: wire format, faults, stats/controls, and real uvicorn + the openai SDK."""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import struct
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from openai.types.chat import ChatCompletionUserMessageParam

from gateway.mock import MockSettings, MockUpstream, parse_fault
from gateway.mock.wire import EMBEDDING, WORDS

ROOT = Path(__file__).resolve().parents[2]
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MESSAGES: list[ChatCompletionUserMessageParam] = [{"role": "user", "content": "hi"}]


async def call(
    app: MockUpstream,
    path: str,
    body: Any = None,
    fault: str | None = None,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    headers = {**(headers or {}), **({"x-mock-fault": fault} if fault else {})}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
        return await client.request(method, path, json=body, headers=headers, **kwargs)


def sse(response: httpx.Response) -> list[Any]:
    """Decoded ``data:`` payloads of an SSE body; ``[DONE]`` kept as the string."""
    assert response.headers["content-type"] == "text/event-stream"
    events = [e for e in response.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    return [e[6:] if e == "data: [DONE]" else orjson.loads(e[6:]) for e in events]


class Driver:
    """Drives the ASGI app by hand: the body, then ``http.disconnect`` once `gone` is set."""

    def __init__(self, body: Any, fault: str | None = None, path: str = CHAT) -> None:
        headers = [(b"x-mock-fault", fault.encode())] if fault else []
        self.scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
        self.body, self.receives, self.gone = orjson.dumps(body), 0, asyncio.Event()
        self.sent: list[tuple[float, MutableMapping[str, Any]]] = []

    async def receive(self) -> MutableMapping[str, Any]:
        self.receives += 1
        if self.receives == 1:
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append((time.monotonic(), message))

    def start(self, app: MockUpstream) -> asyncio.Task[None]:
        return asyncio.ensure_future(app(self.scope, self.receive, self.send))

    def bodies(self) -> list[bytes]:
        return [m["body"] for _, m in self.sent if m["type"] == "http.response.body"]


# --- wire format ---------------------------------------------------------------------------


async def test_chat_non_stream_echoes_model_and_counts_usage() -> None:
    app = MockUpstream(MockSettings(chunks=3))
    r = await call(app, CHAT, {"model": "gpt-x", "messages": MESSAGES})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    data = r.json()
    assert data["object"] == "chat.completion" and data["model"] == "gpt-x"
    choice = data["choices"][0]
    assert choice["message"]["content"] == "".join(WORDS[:3])
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    usage = data["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + 3
    r = await call(app, CHAT, {"messages": MESSAGES})
    assert r.json()["model"] == "mock-model"


async def test_chat_stream_format_and_usage_chunk() -> None:
    app = MockUpstream(MockSettings(chunks=10))
    body = {"model": "m1", "messages": MESSAGES, "stream": True}
    events = sse(await call(app, CHAT, body))
    assert events[-1] == "[DONE]" and len(events) == 12  # 10 words, stop, [DONE]
    words = events[:10]
    assert all(e["object"] == "chat.completion.chunk" and e["model"] == "m1" for e in words)
    assert words[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(e["choices"][0]["delta"]["content"] for e in words)
    assert text == "".join(WORDS[i % len(WORDS)] for i in range(10))
    assert events[10]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    events = sse(await call(app, CHAT, {**body, "stream_options": {"include_usage": True}}))
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 10
    assert events[-1] == "[DONE]"


async def test_no_usage_is_reported_when_asked_not_to() -> None:
    """`no-usage`: an upstream that ignores `stream_options.include_usage` and reports none."""
    app = MockUpstream(MockSettings(chunks=10))
    asked = {"model": "m", "stream": True, "stream_options": {"include_usage": True}}
    events = sse(await call(app, CHAT, asked, fault="no-usage"))
    assert len(events) == 12 and all(e == "[DONE]" or "usage" not in e for e in events)
    answer = (await call(app, CHAT, {"model": "m"}, fault="no-usage")).json()
    assert answer["usage"] is None and answer["choices"][0]["message"]["content"]


async def test_completions_stream_and_non_stream_agree() -> None:
    app = MockUpstream(MockSettings(chunks=4))
    full = (await call(app, COMPLETIONS, {"model": "c", "prompt": "x"})).json()
    assert full["object"] == "text_completion" and full["model"] == "c"
    events = sse(await call(app, COMPLETIONS, {"model": "c", "prompt": "x", "stream": True}))
    assert all(e["object"] == "text_completion" for e in events[:-1])
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == full["choices"][0]["text"]
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_embeddings_shapes() -> None:
    app = MockUpstream(MockSettings())
    one = (await call(app, "/v1/embeddings", {"model": "e", "input": "a"})).json()
    assert one["object"] == "list" and one["model"] == "e" and len(one["data"]) == 1
    assert one["data"][0] == {"object": "embedding", "index": 0, "embedding": list(EMBEDDING)}
    many = (await call(app, "/v1/embeddings", {"input": ["a", "b", "c"]})).json()
    assert [d["index"] for d in many["data"]] == [0, 1, 2]
    assert many["usage"]["total_tokens"] == many["usage"]["prompt_tokens"]
    tokens = (await call(app, "/v1/embeddings", {"input": [1, 2, 3]})).json()
    assert len(tokens["data"]) == 1
    packed = await call(app, "/v1/embeddings", {"input": "a", "encoding_format": "base64"})
    raw = base64.b64decode(packed.json()["data"][0]["embedding"])
    assert struct.unpack("<8f", raw) == EMBEDDING


async def test_models_routes_and_invalid_json() -> None:
    app = MockUpstream(MockSettings(model="only"))
    models = (await call(app, "/v1/models", method="GET")).json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["only"]
    assert (await call(app, "/nope", method="GET")).status_code == 404
    assert (await call(app, CHAT, method="GET")).status_code == 405
    bad = await call(app, CHAT, content=b"{not json", method="POST")
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json"
    assert set(error) >= {"message", "type", "code"}
    assert (await call(app, CHAT, [1, 2])).status_code == 400


# --- faults --------------------------------------------------------------------------------


def test_parse_fault_grammar() -> None:
    fault = parse_fault("fail:503, latency:10,ttft:20,chunks:3,chunk-delay:5,cut:2,empty")
    assert (fault.status, fault.latency_ms, fault.ttft_ms) == (503, 10.0, 20.0)
    assert (fault.chunks, fault.chunk_delay_ms, fault.cut, fault.empty) == (3, 5.0, 2, True)
    assert parse_fault("fail").status == 500
    assert parse_fault("stall").stall and parse_fault("stall-after:4").stall_after == 4
    for bad in ("fail:200", "boom", "latency:x", "chunks:-1", "stall:3", "latency:nan"):
        with pytest.raises(ValueError):
            parse_fault(bad)


@pytest.mark.parametrize(
    ("fault", "status", "kind"),
    [
        ("fail", 500, "server_error"),
        ("fail:503", 503, "server_error"),
        ("fail:429", 429, "rate_limit_error"),
        ("fail:400", 400, "invalid_request_error"),
        ("bogus", 400, "invalid_request_error"),
    ],
)
async def test_fail_faults(fault: str, status: int, kind: str) -> None:
    app = MockUpstream(MockSettings())
    r = await call(app, CHAT, {"messages": MESSAGES, "stream": True}, fault=fault)
    assert r.status_code == status and r.json()["error"]["type"] == kind
    assert app.stats.errors_sent == 1 and app.stats.completed == 1


async def test_cut_empty_chunks_and_non_stream_cut() -> None:
    app = MockUpstream(MockSettings())
    stream = {"messages": MESSAGES, "stream": True}
    cut = sse(await call(app, CHAT, stream, fault="cut:2"))
    assert len(cut) == 2 and "[DONE]" not in cut
    empty = await call(app, CHAT, stream, fault="empty")
    assert empty.status_code == 200 and empty.content == b""
    assert empty.headers["content-type"] == "text/event-stream"
    assert len(sse(await call(app, CHAT, stream, fault="chunks:3"))) == 5
    full = (await call(app, CHAT, {"messages": MESSAGES})).content
    assert (await call(app, CHAT, {"messages": MESSAGES}, fault="cut:10")).content == full[:10]


async def test_seeded_error_rate_is_deterministic() -> None:
    async def statuses(seed: int) -> list[int]:
        app = MockUpstream(MockSettings(error_rate=0.5, seed=seed))
        return [(await call(app, CHAT, {"messages": MESSAGES})).status_code for _ in range(20)]

    rng = random.Random(7)
    expected = [500 if rng.random() < 0.5 else 200 for _ in range(20)]
    assert await statuses(7) == expected == await statuses(7)
    assert 200 in expected and 500 in expected


async def test_timing_of_ttft_and_chunk_delay() -> None:
    driver = Driver({"messages": MESSAGES, "stream": True}, "ttft:100,chunk-delay:30,chunks:3")
    await driver.start(MockUpstream(MockSettings()))
    times = [t for t, m in driver.sent]
    assert driver.sent[0][1]["type"] == "http.response.start"
    assert times[1] - times[0] >= 0.095  # headers first, then the ttft delay
    assert all(b - a >= 0.028 for a, b in itertools.pairwise(times[1:5]))
    assert driver.bodies()[-1] == b"data: [DONE]\n\n" and len(driver.bodies()) == 5


async def test_fast_path_spawns_no_watcher() -> None:
    driver = Driver({"messages": MESSAGES})
    await driver.start(MockUpstream(MockSettings()))
    assert driver.receives == 1 and len(driver.bodies()) == 1


@pytest.mark.parametrize(
    ("fault", "stream", "bodies"),
    [
        ("stall", False, 0),
        ("latency:5000", False, 0),
        ("ttft:5000", True, 0),
        ("stall-after:2", True, 2),
        ("stall-after:5", False, 1),
        ("chunk-delay:5000", True, 1),
    ],
)
async def test_disconnect_stops_work(fault: str, stream: bool, bodies: int) -> None:
    app = MockUpstream(MockSettings())
    driver = Driver({"messages": MESSAGES, "stream": stream}, fault)
    task = driver.start(app)
    for _ in range(100):  # the mock runs until it waits on its fault; no wall-clock time passes
        await asyncio.sleep(0)
    assert not task.done() and app.stats.inflight == 1
    assert len(driver.bodies()) == bodies
    driver.gone.set()
    await asyncio.wait_for(task, 1)
    stats = app.stats
    assert (stats.disconnects, stats.completed, stats.inflight) == (1, 0, 0)
    assert len(stats.disconnect_times) == 1


# --- stats and controls --------------------------------------------------------------------


async def test_stats_reset_and_header_capture() -> None:
    app = MockUpstream(MockSettings())
    await call(app, CHAT, {"model": "a", "messages": MESSAGES}, headers={"X-Trace": "t1"})
    await call(app, COMPLETIONS, {"model": "b", "prompt": "p"})
    await call(app, COMPLETIONS, {"model": "b", "prompt": "q"}, headers={"X-Trace": "t2"})
    stats = (await call(app, "/mock/stats", method="GET")).json()
    assert stats["requests"] == 3 and stats["completed"] == 3 and stats["errors_sent"] == 0
    assert stats["by_path"] == {CHAT: 1, COMPLETIONS: 2}
    assert stats["models_seen"] == {"a": 1, "b": 2}
    assert stats["last_headers"]["x-trace"] == "t2" and stats["last_body"]["prompt"] == "q"
    assert stats["max_inflight"] == 1 and stats["inflight"] == 0
    reset = (await call(app, "/mock/reset")).json()
    assert reset["requests"] == 0 and reset["by_path"] == {} and reset["last_body"] is None


async def test_config_endpoint_changes_knobs() -> None:
    app = MockUpstream(MockSettings())
    r = await call(app, "/mock/config", {"chunks": 2, "error_rate": 0, "ttft_ms": None})
    assert r.status_code == 200 and r.json()["chunks"] == 2 and r.json()["model"] == "mock-model"
    assert len(sse(await call(app, CHAT, {"messages": MESSAGES, "stream": True}))) == 4
    await call(app, "/mock/config", {"error_rate": 1})
    assert (await call(app, CHAT, {"messages": MESSAGES})).status_code == 500
    for bad in ({"bogus": 1}, {"chunks": -1}, {"chunks": 1.5}, {"error_rate": 2}, [1]):
        r = await call(app, "/mock/config", bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_config"
    assert app.settings.error_rate == 1.0


async def test_responses_api_is_stateful_and_ids_name_the_mock() -> None:
    app = MockUpstream(MockSettings(model="up-one"))
    created = (await call(app, "/v1/responses", {"model": "m", "input": "hi"})).json()
    assert created["id"].startswith("resp_up-one_") and created["object"] == "response"
    assert created["usage"]["output_tokens"] == 8
    follow = {"model": "m", "input": "more", "previous_response_id": created["id"]}
    assert (await call(app, "/v1/responses", follow)).json()["previous_response_id"] == created[
        "id"
    ]
    unknown = await call(app, "/v1/responses", {**follow, "previous_response_id": "resp_other"})
    assert unknown.status_code == 404
    by_id = f"/v1/responses/{created['id']}"
    assert (await call(app, by_id, method="GET")).json()["id"] == created["id"]
    items = (await call(app, by_id + "/input_items", method="GET")).json()
    assert items["data"][0]["content"] == "hi"
    assert (await call(app, by_id + "/cancel")).json()["status"] == "cancelled"
    assert (await call(app, by_id, method="DELETE")).json()["deleted"] is True
    assert (await call(app, by_id, method="GET")).status_code == 404
    assert (await call(app, by_id, method="PUT")).status_code == 405


async def test_responses_stream_is_typed_and_ends_completed() -> None:
    app = MockUpstream(MockSettings(model="up-one"))
    resp = await call(app, "/v1/responses", {"model": "m", "input": "hi", "stream": True})
    events = [e for e in resp.text.split("\n\n") if e]
    kinds = [e.split("\n")[0].removeprefix("event: ") for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 8
    assert "[DONE]" not in resp.text
    cut = await call(app, "/v1/responses", {"model": "m", "stream": True}, fault="cut:3")
    assert cut.text.count("event: ") == 3 and "response.completed" not in cut.text
