"""The SSE relay driven in process: sample events, an upstream body as an async generator, and
`relay()`, which runs one `SseRelay` to the end and returns the exchange and what it sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gateway.exchange import Exchange
from gateway.proxy.deadline import DeadlineWheel
from gateway.proxy.sse import SseRelay

EVENT = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
DONE = b"data: [DONE]\n\n"
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n'


async def gen(*chunks: bytes, stall: float = 0.0) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
    if stall:
        await asyncio.sleep(stall)


async def relay(
    first: bytes,
    rest: AsyncIterator[bytes],
    secret: bytes = b"",
    idle: float = 5.0,
    strip_usage: bool = False,
) -> tuple[Exchange, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    loop = asyncio.get_running_loop()
    ex = Exchange("rid", "/v1/chat/completions", loop.time())
    ex.strip_usage = strip_usage
    deadline = DeadlineWheel().start(60, idle, 60)
    deadline.idle()
    try:
        await SseRelay(ex, send, loop.time, secret).run(first, rest, deadline)
    finally:
        deadline.stop()
    return ex, sent


def body(sent: list[dict[str, Any]]) -> bytes:
    assert sent[-1]["more_body"] is False and all(m["more_body"] for m in sent[:-1])
    return b"".join(m["body"] for m in sent)
