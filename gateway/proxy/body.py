"""The request's body: read once under the size limits (declared, counted, and the memory all
unfinished bodies hold together), parsed as the JSON object a model endpoint takes, and the
request id the client may give."""

from __future__ import annotations

from random import getrandbits
from typing import Any

import orjson
from starlette.types import Receive

from gateway.config.schema import Limits
from gateway.errors import BadRequest, ClientDisconnected, PayloadTooLarge, Unavailable

REQUEST_ID_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


class PendingBodies:
    """Bytes held by request bodies still arriving in several pieces, across the process (a
    body that arrives in one piece is never counted: nothing waits while holding it)."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = 0


async def read_body(
    receive: Receive, declared: bytes | None, limits: Limits, pending: PendingBodies
) -> bytes:
    """The whole request body, refusing more than `max_body_bytes` (declared or counted), and
    503 while unfinished bodies already hold `max_pending_body_bytes`."""
    limit = limits.max_body_bytes
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("invalid Content-Length")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected("client disconnected while sending the request")
    chunk: bytes = message.get("body", b"")
    if len(chunk) > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    if not message.get("more_body", False):
        return chunk  # the common case: the whole body in one piece
    parts, size = [chunk], len(chunk)
    pending.held += size
    try:
        while True:
            if pending.held > limits.max_pending_body_bytes:
                raise Unavailable(
                    "gateway overloaded: too many request bodies in progress",
                    code="pending_bodies_full",
                )
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected("client disconnected while sending the request")
            chunk = message.get("body", b"")
            size += len(chunk)
            pending.held += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body larger than {limit} bytes")
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)
    finally:
        pending.held -= size


def parse(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string", param="model")
    return payload


def request_id(given: bytes | None) -> str:
    """The client's x-request-id if it is short and plain, else a fresh random one (96 bits
    from `random`: ids need to be unique, not secret, and `os.urandom` is a system call)."""
    if given and len(given) <= 64 and REQUEST_ID_CHARS.issuperset(given):
        return given.decode()
    return getrandbits(96).to_bytes(12).hex()
