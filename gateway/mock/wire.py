"""Mock upstream wire format: OpenAI response bodies, encoded once and filled per request.

Every constant fragment (chunk objects per word, error shapes, embedding vectors) is serialised
with orjson at start-up; a request only splices in its model name and its usage block.
"""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

import orjson

WORDS = ("Hello", " from", " the", " mock", " upstream", " model", " says", " hi.")
EMBEDDING = (0.125, -0.25, 0.375, -0.5, 0.625, -0.75, 0.875, -1.0)
HOLE_STR = "\x00hole\x00"
HOLE = orjson.dumps(HOLE_STR)
SSE = (b"data: ", b"\n\n")
DONE = b"data: [DONE]\n\n"
JSON_TYPE = (b"content-type", b"application/json")
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
MAX_CACHED_ANSWERS = 64

Template = tuple[bytes, ...]


def template(obj: dict[str, Any], prefix: bytes = b"", suffix: bytes = b"") -> Template:
    """Encode ``obj`` once, split at its `HOLE_STR` values (model first, usage second)."""
    return tuple((prefix + orjson.dumps(obj) + suffix).split(HOLE))


def render(parts: Template, *values: bytes) -> bytes:
    out = [parts[0]]
    for value, part in zip(values, parts[1:], strict=True):
        out += (value, part)
    return b"".join(out)


def usage(prompt: int, completion: int) -> bytes:
    return b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}' % (
        prompt,
        completion,
        prompt + completion,
    )


def error_body(status: int, message: str, code: str) -> bytes:
    """OpenAI error shape ``{"error": {"message", "type", "param", "code"}}``."""
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [JSON_TYPE, (b"content-length", b"%d" % len(body))]


class Wire:
    """Pre-encoded OpenAI answers; chat and text (``/v1/completions``) flavours."""

    def __init__(self) -> None:
        self.created = int(time.time())
        role = [
            template(self._chunk(True, {"role": "assistant", "content": w}), *SSE) for w in WORDS
        ]
        self.first = {True: role, False: [template(self._chunk(False, w), *SSE) for w in WORDS]}
        self.next = {True: [template(self._chunk(True, {"content": w}), *SSE) for w in WORDS]}
        self.next[False] = self.first[False]
        self.stop = {
            c: template(self._chunk(c, {} if c else "", "stop"), *SSE) for c in (True, False)
        }
        self.usage = {
            c: template({**self._head(c, ".chunk"), "choices": [], "usage": HOLE_STR}, *SSE)
            for c in (True, False)
        }
        self.full: dict[tuple[bool, int], Template] = {}
        packed = base64.b64encode(struct.pack("<8f", *EMBEDDING)).decode()
        self.vectors = {False: orjson.dumps(list(EMBEDDING)), True: orjson.dumps(packed)}

    def _head(self, chat: bool, suffix: str = "") -> dict[str, Any]:
        return {
            "id": "chatcmpl-mock" if chat else "cmpl-mock",
            "object": "chat.completion" + suffix if chat else "text_completion",
            "created": self.created,
            "model": HOLE_STR,
        }

    def _chunk(self, chat: bool, delta: Any, finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta} if chat else {"index": 0, "text": delta}
        choice.update(logprobs=None, finish_reason=finish)
        return {**self._head(chat, ".chunk"), "choices": [choice]}

    def events(self, chat: bool, n: int, model: bytes, use: bytes | None) -> list[bytes]:
        """All SSE events of one streamed answer, ``data: [DONE]`` last."""
        first, rest, size = self.first[chat], self.next[chat], len(WORDS)
        out = [render((rest if i else first)[i % size], model) for i in range(n)]
        out.append(render(self.stop[chat], model))
        if use is not None:
            out.append(render(self.usage[chat], model, use))
        out.append(DONE)
        return out

    def answer(self, chat: bool, n: int, model: bytes, use: bytes) -> bytes:
        """A complete ``chat.completion`` / ``text_completion`` body of ``n`` words."""
        parts = self.full.get((chat, n))
        if parts is None:
            text = "".join(WORDS[i % len(WORDS)] for i in range(n))
            message = {"role": "assistant", "content": text, "refusal": None}
            choice = {"index": 0, "message": message} if chat else {"index": 0, "text": text}
            choice.update(logprobs=None, finish_reason="stop")
            parts = template({**self._head(chat), "choices": [choice], "usage": HOLE_STR})
            if len(self.full) < MAX_CACHED_ANSWERS:
                self.full[(chat, n)] = parts
        return render(parts, model, use)

    def embeddings(self, model: bytes, count: int, b64: bool, prompt: int) -> bytes:
        """An embeddings list of ``count`` constant 8-dimensional vectors."""
        vector = self.vectors[b64]
        item = b'{"object":"embedding","index":%d,"embedding":%b}'
        items = b",".join(item % (i, vector) for i in range(count))
        tail = b'"usage":{"prompt_tokens":%d,"total_tokens":%d}}' % (prompt, prompt)
        return b'{"object":"list","data":[%b],"model":%b,%b' % (items, model, tail)
