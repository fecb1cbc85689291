"""The Responses API's stateful side: calls on a response id, and learning the ids created.

`/v1/responses/{id}` (`GET`, `DELETE`), `/v1/responses/{id}/cancel` (`POST`) and
`/v1/responses/{id}/input_items` (`GET`) are relayed as they came (`ById`) to the version that
created the id, found in the `ResponseIndex`. A `POST /v1/responses` learns the id it created
through `Capture`, a wrapper around the client's `send`: from the first stream event
(`response.created`, relayed at once, never buffered) or from the JSON answer, and it makes sure
the id is recorded (in Redis too, when shared) before the answer's last byte leaves, so a
follow-up sent the moment the answer ends finds its version on any replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from starlette.types import Message, Send

from gateway.exchange import Exchange
from gateway.livestats.responses import ResponseIndex
from gateway.proxy.upstream import Body
from gateway.routing.table import VersionEntry

PREFIX = "/v1/responses/"
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
MAX_ID = 256
# suffix -> the methods it takes
ROUTES = {"": ("GET", "DELETE"), "/cancel": ("POST",), "/input_items": ("GET",)}
CAPTURE_MESSAGES = 4  # body messages searched for the id before giving up


def split_path(path: str) -> tuple[str, str] | None:
    """(id, suffix) of a `/v1/responses/{id}[/cancel|/input_items]` path, else None."""
    rest = path[len(PREFIX) :]
    rid, slash, tail = rest.partition("/")
    suffix = slash + tail
    if not rid or len(rid) > MAX_ID or suffix not in ROUTES or not ID_CHARS.issuperset(rid):
        return None
    return rid, suffix


class ById:
    """A call on a response id, relayed with its method, path tail, query and body."""

    replayable = True

    def __init__(self, method: str, rid: str, suffix: str, query: bytes, body: bytes) -> None:
        self.method = method
        self._tail = f"/responses/{rid}{suffix}" + (f"?{query.decode('latin-1')}" if query else "")
        self._body = body

    def target(self, version: VersionEntry, path: str) -> tuple[str, Body | None, int | None]:
        if self._body or self.method == "POST":
            return version.base_url + self._tail, self._body, len(self._body)
        return version.base_url + self._tail, None, None


def response_id(body: bytes) -> str | None:
    """The id of a Response object (`{"object":"response","id":...}`), or of the response an
    event carries (`{"type":"response.created","response":{...}}`)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    inner = obj.get("response")
    if isinstance(inner, dict):
        obj = inner
    rid = obj.get("id")
    return rid if obj.get("object") == "response" and isinstance(rid, str) and rid else None


def _event_id(events: bytes) -> str | None:
    for line in events.split(b"\n"):
        if line.startswith(b"data:"):
            rid = response_id(line[5:].strip())
            if rid is not None:
                return rid
    return None


class Capture:
    """Wraps the client's `send` for `POST /v1/responses`: learns the created id as the answer
    passes and holds the last message until the id is recorded."""

    __slots__ = ("_ex", "_index", "_model", "_ok", "_searched", "_send", "_write", "rid")

    def __init__(self, send: Send, ex: Exchange, index: ResponseIndex, model: str) -> None:
        self._send = send
        self._ex = ex
        self._index = index
        self._model = model
        self._ok = False
        self._searched = 0
        self._write: asyncio.Task[None] | None = None
        self.rid: str | None = None

    @classmethod
    def wrapper(cls, ex: Exchange, index: ResponseIndex, model: str) -> Callable[[Send], Send]:
        return lambda send: cls(send, ex, index, model)

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._ok = message["status"] == 200
        elif self._ok and self.rid is None and self._searched < CAPTURE_MESSAGES:
            self._searched += 1
            self._learn(message.get("body", b""))
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            await self.settle()
        await self._send(message)

    def _learn(self, body: bytes) -> None:
        """The id from the first stream event(s) or the whole JSON answer, written at once."""
        rid = _event_id(body) if self._ex.stream else response_id(body)
        if rid is None or self._ex.version is None:
            return
        self.rid = rid
        owner = (self._model, self._ex.version)
        self._write = asyncio.get_running_loop().create_task(self._index.remember(rid, owner))

    async def settle(self) -> None:
        """Wait for the id's write (bounded by the store timeout; it never raises)."""
        if self._write is not None:
            write, self._write = self._write, None
            await write


class Forget:
    """Wraps the client's `send` for `DELETE /v1/responses/{id}`: once the upstream confirmed
    the deletion (200), the id is forgotten before the answer's last byte leaves."""

    __slots__ = ("_index", "_ok", "_rid", "_send")

    def __init__(self, send: Send, index: ResponseIndex, rid: str) -> None:
        self._send, self._index, self._rid = send, index, rid
        self._ok = False

    @classmethod
    def wrapper(cls, index: ResponseIndex, rid: str) -> Callable[[Send], Send]:
        return lambda send: cls(send, index, rid)

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._ok = message["status"] == 200
        elif self._ok and not message.get("more_body", False):
            await self._index.forget(self._rid)
        await self._send(message)
