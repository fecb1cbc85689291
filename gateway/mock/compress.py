"""The mock's compressing mode: an ASGI `send` wrapper that gzips whatever answer it carries.

Used by the ``gzip`` fault item (regardless of the request's ``Accept-Encoding``, like upstreams
that ignore it) and by ``gzip-asked`` (only when the request accepts gzip). Each body message is
flushed (``Z_SYNC_FLUSH``) so a compressed stream still arrives event by event.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


def accepts_gzip(headers: list[tuple[bytes, bytes]]) -> bool:
    """Does a request's `Accept-Encoding` name gzip?"""
    return any(name == b"accept-encoding" and b"gzip" in value.lower() for name, value in headers)


def gzipping(send: Send) -> Send:
    """`send`, with the answer gzip-encoded (its `content-length` dropped: it changes)."""
    packer = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(n, v) for n, v in message.get("headers", []) if n != b"content-length"]
            headers.append((b"content-encoding", b"gzip"))
            message = {**message, "headers": headers}
        elif message["type"] == "http.response.body":
            more = message.get("more_body", False)
            data = packer.compress(message.get("body", b""))
            data += packer.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)
            message = {**message, "body": data}
        await send(message)

    return wrapped
