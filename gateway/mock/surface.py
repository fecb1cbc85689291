"""The mock upstream's other OpenAI endpoints: images, speech, transcriptions, moderations, rerank.

Small deterministic answers in OpenAI's shapes (rerank in the Cohere/Jina shape vLLM serves),
each naming the model it was asked for, so tests can check the gateway's routing and model
rewrite. Transcriptions parse the multipart form (`model`, `file`) and report the file's size.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson

PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
SPEECH_TYPE = (b"content-type", b"audio/mpeg")


def image(request: dict[str, Any]) -> bytes:
    given = request.get("n")
    count = given if isinstance(given, int) else 1
    prompt = request.get("prompt")
    if request.get("response_format") == "b64_json":
        item: dict[str, Any] = {"b64_json": base64.b64encode(PNG_1X1).decode()}
    else:
        item = {"url": "https://mock-upstream.invalid/image.png"}
    item["revised_prompt"] = prompt
    return orjson.dumps({"created": int(time.time()), "data": [item] * max(1, min(count, 10))})


def speech(request: dict[str, Any], model: str) -> bytes:
    """Fake MP3 bytes: an ID3 tag, then the model and the text (so tests can read them back)."""
    given = request.get("input")
    text = given if isinstance(given, str) else ""
    return b"ID3\x04\x00\x00mock-audio:" + model.encode() + b":" + text.encode()


def moderation(request: dict[str, Any], model: str) -> bytes:
    given = request.get("input")
    count = len(given) if isinstance(given, list) else 1
    categories = ("harassment", "hate", "self-harm", "sexual", "violence")
    result = {
        "flagged": False,
        "categories": dict.fromkeys(categories, False),
        "category_scores": dict.fromkeys(categories, 0.001),
    }
    return orjson.dumps({"id": "modr-mock", "model": model, "results": [result] * count})


def rerank(request: dict[str, Any], model: str) -> bytes:
    documents = request.get("documents")
    docs = documents if isinstance(documents, list) else []
    results = [{"index": i, "relevance_score": 1.0 / (i + 1)} for i in range(len(docs))]
    tokens = sum(len(str(d)) // 4 + 1 for d in docs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return orjson.dumps({"id": "rerank-mock", "model": model, "results": results, "usage": usage})


def form_fields(body: bytes, content_type: bytes) -> dict[str, bytes]:
    """The parts of a multipart/form-data body by name (ValueError if it is not one)."""
    _, _, params = content_type.partition(b";")
    boundary = b""
    for param in params.split(b";"):
        name, _, value = param.strip().partition(b"=")
        if name.strip().lower() == b"boundary":
            boundary = value.strip(b' "')
    if not boundary:
        raise ValueError("not multipart/form-data")
    fields: dict[str, bytes] = {}
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, value = part.partition(b"\r\n\r\n")
        for token in head.split(b";"):
            key, _, val = token.strip().partition(b"=")
            if key == b"name":
                fields[val.strip(b'"').decode()] = value.removesuffix(b"\r\n")
                break
    return fields


def transcription(fields: dict[str, bytes]) -> bytes:
    model = fields.get("model", b"").decode()
    size = len(fields.get("file", b""))
    prompt = size // 100 + 1
    usage = {"type": "tokens", "input_tokens": prompt, "output_tokens": 6}
    usage["total_tokens"] = prompt + 6
    text = f"mock transcript of {size} bytes by {model}"
    return orjson.dumps({"text": text, "usage": usage})
