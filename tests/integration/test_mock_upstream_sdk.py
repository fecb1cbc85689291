"""The mock upstream as a real server (uvicorn in its own process) driven by the official
`openai` SDK, sync and async, and a real client disconnect."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionUserMessageParam

from gateway.mock.wire import EMBEDDING, WORDS

ROOT = Path(__file__).resolve().parents[2]
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MESSAGES: list[ChatCompletionUserMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = f"from gateway.mock import run, MockSettings; run(MockSettings(), '127.0.0.1', {port})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{url}/v1/models", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "mock did not start"
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_openai_sdk_sync(server: str) -> None:
    with openai.OpenAI(base_url=f"{server}/v1", api_key="k", max_retries=0) as client:
        chat = client.chat.completions.create(model="s1", messages=MESSAGES)
        assert chat.model == "s1" and chat.choices[0].message.content == "".join(WORDS)
        assert chat.usage is not None and chat.usage.completion_tokens == 8
        stream = client.chat.completions.create(
            model="s2", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        parts = list(stream)
        content = "".join(p.choices[0].delta.content or "" for p in parts if p.choices)
        assert content == "".join(WORDS)
        assert parts[-1].usage is not None and parts[-1].usage.completion_tokens == 8
        text = client.completions.create(model="s3", prompt="p")
        assert text.choices[0].text == "".join(WORDS)
        pieces = list(client.completions.create(model="s3", prompt="p", stream=True))
        assert "".join(p.choices[0].text for p in pieces) == "".join(WORDS)
        emb = client.embeddings.create(model="s4", input=["a", "b"])
        assert len(emb.data) == 2 and emb.data[1].embedding == list(EMBEDDING)
        with pytest.raises(openai.RateLimitError):
            fault = {"x-mock-fault": "fail:429"}
            client.chat.completions.create(model="s1", messages=MESSAGES, extra_headers=fault)


async def test_openai_sdk_async(server: str) -> None:
    async with openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="k", max_retries=0) as client:
        chat = await client.chat.completions.create(model="a1", messages=MESSAGES)
        assert chat.model == "a1" and chat.choices[0].finish_reason == "stop"
        stream = await client.chat.completions.create(model="a2", messages=MESSAGES, stream=True)
        chunks = [c async for c in stream]
        assert chunks[-1].choices[0].finish_reason == "stop" and chunks[0].model == "a2"
        text = await client.completions.create(model="a3", prompt="p")
        assert text.usage is not None and text.usage.completion_tokens == 8
        texts = await client.completions.create(model="a3", prompt="p", stream=True)
        pieces = [p async for p in texts]
        assert len(pieces) == 9
        emb = await client.embeddings.create(model="a4", input="x")
        assert emb.model == "a4" and len(emb.data[0].embedding) == 8


def test_real_disconnect_is_seen_within_a_second(server: str) -> None:
    httpx.post(f"{server}/mock/reset").raise_for_status()
    body = {"model": "d", "messages": MESSAGES, "stream": True}
    with httpx.Client(base_url=server) as client:
        headers = {"x-mock-fault": "ttft:2000"}
        with client.stream("POST", CHAT, json=body, headers=headers) as response:
            assert response.status_code == 200  # headers arrive before the ttft delay
        closed = time.monotonic()
        while True:
            stats = client.get("/mock/stats").json()
            if stats["disconnects"] == 1 or time.monotonic() - closed > 1:
                break
            time.sleep(0.01)
    assert stats["disconnects"] == 1 and stats["completed"] == 0 and stats["inflight"] == 0
