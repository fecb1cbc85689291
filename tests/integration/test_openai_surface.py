"""The rest of the OpenAI surface through a real gateway with the official `openai` SDK: images,
speech, transcriptions (a multipart upload streamed through, its `model` field rewritten),
moderations and rerank, each routed by its `model`, and a clear 404 for a model whose versions
do not declare the endpoint."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support import Gateway, Mock, gateway, version

SURFACE = ["images", "audio.speech", "audio.transcriptions", "moderations", "rerank"]
MAX_BODY = 1 << 20


@pytest.fixture(scope="module")
def gw(mocks: tuple[Mock, Mock], workdir: Path) -> Iterator[Gateway]:
    one, two = mocks
    media = {"upstream": {"url": one.url, "model": one.model, "endpoints": SURFACE}}
    config = {
        "limits": {"max_body_bytes": MAX_BODY},
        "logging": {"access": False},
        "models": {
            "media": {"versions": {"m1": media}},
            "chat": {"versions": {"v1": version(two.url, two.model)}},
        },
    }
    with gateway(config, workdir) as g:
        yield g


def sdk(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key="k", max_retries=0)


def test_images(gw: Gateway) -> None:
    raw = sdk(gw).images.with_raw_response.generate(model="media", prompt="a cat", n=2)
    assert raw.headers["x-gateway-version"] == "m1"
    images = raw.parse()
    assert images.data is not None and len(images.data) == 2
    assert images.data[0].revised_prompt == "a cat"


def test_speech_relays_audio_bytes(gw: Gateway, mocks: tuple[Mock, Mock]) -> None:
    audio = sdk(gw).audio.speech.create(model="media", voice="alloy", input="say this")
    assert audio.response.headers["content-type"] == "audio/mpeg"
    assert audio.content == b"ID3\x04\x00\x00mock-audio:up-one:say this"  # model rewritten


def test_transcription_upload_is_streamed_with_its_model_rewritten(
    gw: Gateway, mocks: tuple[Mock, Mock]
) -> None:
    sound = bytes(range(256)) * 2000  # 512 KB, under max_body_bytes
    result = sdk(gw).audio.transcriptions.create(
        model="media", file=("clip.wav", io.BytesIO(sound), "audio/wav")
    )
    assert result.text == f"mock transcript of {len(sound)} bytes by up-one"
    stats = mocks[0].stats()
    assert stats["last_upload"]["file"] == len(sound)


def test_transcription_too_large_is_413(gw: Gateway) -> None:
    big = b"\0" * (MAX_BODY + 1)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gw).audio.transcriptions.create(model="media", file=("a.wav", big, "audio/wav"))
    assert caught.value.status_code == 413


def test_transcription_without_model_field_is_400(gw: Gateway) -> None:
    resp = httpx.post(f"{gw.url}/audio/transcriptions", files={"file": ("a.wav", b"abc")})
    assert resp.status_code == 400
    assert "'model' is required" in resp.json()["error"]["message"]


def test_moderations(gw: Gateway) -> None:
    result = sdk(gw).moderations.create(model="media", input=["a", "b"])
    assert result.model == "up-one" and len(result.results) == 2
    assert result.results[0].flagged is False


def test_rerank(gw: Gateway) -> None:
    resp = httpx.post(
        f"{gw.url}/rerank",
        json={"model": "media", "query": "q", "documents": ["x", "y", "z"]},
    )
    assert resp.status_code == 200, resp.text
    assert [r["index"] for r in resp.json()["results"]] == [0, 1, 2]
    assert resp.headers["x-gateway-model"] == "media"


def test_undeclared_endpoint_is_404(gw: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gw).images.generate(model="chat", prompt="a cat")
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "endpoint_not_supported"
    with pytest.raises(openai.NotFoundError):
        sdk(gw).chat.completions.create(model="media", messages=[{"role": "user", "content": "x"}])
