"""In-process stand-ins for the upstream transport: `FakeTransport` records every call and
answers with `FakeResponse`s (or raises), so the request path runs with no network."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson


class FakeResponse:
    def __init__(
        self, status: int, headers: Sequence[tuple[bytes, bytes]], chunks: Sequence[bytes]
    ) -> None:
        self.status = status
        self.raw_headers = tuple(headers)
        self._chunks = chunks
        declared = next((v for k, v in headers if k == b"content-length"), None)
        self.content_length = None if declared is None else int(declared)  # else "chunked"
        self.closed = self.released = False

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk

    async def read(self) -> bytes:
        return b"".join(self._chunks)

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        self.released = True


class FakeTransport:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.answer: Any = lambda url: FakeResponse(
            200,
            [(b"content-type", b"application/json")],
            [b'{"ok":1,', b'"usage":{"prompt_tokens":4,"completion_tokens":2}}'],
        )
        self.responses: list[FakeResponse] = []
        self.requests: list[tuple[str, str, dict[str, str], bytes | None]] = []  # `request` calls

    async def post(self, url: str, headers: Any, body: bytes, connect_s: float) -> FakeResponse:
        self.calls.append((url, dict(headers), orjson.loads(body)))
        result = self.answer(url)
        if isinstance(result, Exception):
            raise result
        self.responses.append(result)
        return result  # type: ignore[no-any-return]

    async def request(
        self, method: str, url: str, headers: Any, body: Any, connect_s: float
    ) -> FakeResponse:
        if body is not None and not isinstance(body, bytes):
            body = b"".join([chunk async for chunk in body])  # a streamed upload, read through
        self.requests.append((method, url, dict(headers), body))
        result = self.answer(url)
        if isinstance(result, Exception):
            raise result
        self.responses.append(result)
        return result  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        pass
