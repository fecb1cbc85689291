"""The official `openai` SDK, sync and async, streaming and not, through a real gateway process."""

from __future__ import annotations

import openai
import pytest

from tests.support import Gateway, Mock


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key="client-key", max_retries=0)


def test_chat_non_stream_reports_the_serving_version(gw: Gateway, mocks: tuple[Mock, Mock]) -> None:
    raw = client(gw).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}]
    )
    completion = raw.parse()
    served = raw.headers["x-gateway-version"]
    assert raw.headers["x-gateway-model"] == "chat"
    assert served in ("v1", "v2")
    assert len(raw.headers["x-request-id"]) >= 16
    assert completion.model == {"v1": "up-one", "v2": "up-two"}[served]  # rewritten upstream name
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.total_tokens > 0


def test_chat_stream_sync(gw: Gateway) -> None:
    stream = client(gw).chat.completions.create(
        model="chat@v2",
        stream=True,
        messages=[{"role": "user", "content": "hi"}],
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert all(c.model == "up-two" for c in chunks)


async def test_chat_stream_async_and_completions(gw: Gateway) -> None:
    aclient = openai.AsyncOpenAI(base_url=gw.url, api_key="k", max_retries=0)
    stream = await aclient.chat.completions.create(
        model="chat@stable", stream=True, messages=[{"role": "user", "content": "hi"}]
    )
    models = {chunk.model async for chunk in stream}
    assert models == {"up-one"}
    done = await aclient.completions.create(model="chat@v1", prompt="Once upon")
    assert done.model == "up-one" and done.choices[0].text
    stream2 = await aclient.completions.create(model="chat@v2", prompt="Once", stream=True)
    texts = [c.choices[0].text async for c in stream2 if c.choices]
    assert "".join(texts).strip()
    await aclient.close()


def test_embeddings(gw: Gateway) -> None:
    result = client(gw).embeddings.create(model="chat@v1", input=["a", "b", "c"])
    assert len(result.data) == 3 and len(result.data[0].embedding) > 0


async def test_async_embeddings(gw: Gateway) -> None:
    aclient = openai.AsyncOpenAI(base_url=gw.url, api_key="k", max_retries=0)
    result = await aclient.embeddings.create(model="chat", input="hello")
    assert len(result.data) == 1
    await aclient.close()


@pytest.mark.parametrize(
    ("model", "header", "expected"),
    [
        ("chat@v2", None, "v2"),
        ("chat@v1", None, "v1"),
        ("chat@stable", None, "v1"),
        ("chat@canary", None, "v2"),
        ("chat", "v2", "v2"),
        ("chat", "stable", "v1"),
        ("chat@v2", "canary", "v2"),
    ],
)
def test_every_pin_form(gw: Gateway, model: str, header: str | None, expected: str) -> None:
    headers = {"x-gateway-version": header} if header else {}
    for _ in range(5):
        raw = client(gw).chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "x"}], extra_headers=headers
        )
        assert raw.headers["x-gateway-version"] == expected


def test_models_list_and_get(gw: Gateway) -> None:
    c = client(gw)
    listed = c.models.list()
    ids = [m.id for m in listed.data]
    assert ids == ["chat", "down"]
    chat = listed.data[0].model_dump()
    assert chat["aliases"] == {"stable": "v1", "canary": "v2"}
    versions = {v["version"]: v for v in chat["versions"]}
    assert versions["v1"]["metadata"] == {"run_id": "run-1", "created": "2026-09-01"}
    assert versions["v1"]["weight"] == pytest.approx(0.7)
    one = c.models.retrieve("chat@v1").model_dump()
    assert one["id"] == "chat@v1" and one["aliases"] == ["stable"] and one["created"] > 0
    assert c.models.retrieve("chat@canary").model_dump()["version"] == "v2"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("nope")
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("chat@v9")


def test_errors_surface_as_sdk_exceptions(gw: Gateway) -> None:
    c = client(gw)
    with pytest.raises(openai.NotFoundError) as info:
        c.chat.completions.create(model="gpt-17", messages=[])
    assert "chat" in str(info.value) and "down" in str(info.value)  # lists known models
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="chat@v9", messages=[])
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(
            model="chat@v1", messages=[], extra_headers={"x-gateway-version": "v2"}
        )


def test_stream_cut_by_upstream_raises_in_the_sdk(gw: Gateway) -> None:
    stream = client(gw).chat.completions.create(
        model="chat@v1", stream=True, messages=[], extra_headers={"x-mock-fault": "cut:3"}
    )
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 3
    assert "ended the stream early" in str(info.value)
