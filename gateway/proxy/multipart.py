"""Multipart uploads (`/v1/audio/transcriptions`) streamed through to the upstream.

Routing needs the form's `model` field, which precedes the file in what the OpenAI SDKs send.
`read_upload` reads the body only until that field's value is complete — the rest (the audio
file) stays on the client's connection and is streamed to the upstream as it arrives, so the
gateway holds at most the bytes before the end of the `model` part (all of the body only if a
client puts `model` after the file, which `limits.max_body_bytes` still bounds). The whole body
is counted against `max_body_bytes` as it passes (413 when declared larger, before any upstream
call). The upstream gets the same bytes with only the `model` value replaced by the version's
upstream model name (and `Content-Length` adjusted). A streamed body can be sent once: such a
request gets one attempt (`replayable` is False), unless the whole body was already read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.types import Receive

from gateway.errors import BadRequest, ClientDisconnected, GatewayError, PayloadTooLarge
from gateway.proxy.upstream import Body
from gateway.routing.table import VersionEntry

MAX_MODEL_BYTES = 256
MULTIPART = b"multipart/form-data"


class Upload:
    """A multipart request: what was read (with the `model` value located in it) and the rest
    still to come from the client."""

    method = "POST"

    def __init__(
        self,
        receive: Receive,
        head: bytes,
        value_at: tuple[int, int],
        declared: int | None,
        more: bool,
        limit: int,
    ) -> None:
        self._receive = receive
        self._head = head
        self._value_at = value_at
        self._declared = declared
        self._more = more
        self._limit = limit
        self.size = len(head)  # body bytes received so far
        self.replayable = not more
        self.failure: GatewayError | None = None  # why the client's side of the stream broke
        start, end = value_at
        self.model = head[start:end].decode("utf-8", "replace").strip()

    def target(self, version: VersionEntry, path: str) -> tuple[str, Body | None, int | None]:
        start, end = self._value_at
        name = version.upstream_model.encode()
        head = b"".join((self._head[:start], name, self._head[end:]))
        delta = len(head) - len(self._head)
        if not self._more:
            return version.urls[path], head, len(head)
        length = None if self._declared is None else self._declared + delta
        self._more = False  # the rest can be read once
        return version.urls[path], self._stream(head), length

    async def _stream(self, head: bytes) -> AsyncIterator[bytes]:
        yield head
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.failure = ClientDisconnected("client disconnected while uploading")
                raise self.failure
            chunk = message.get("body", b"")
            self.size += len(chunk)
            if self.size > self._limit:
                self.failure = PayloadTooLarge(f"request body larger than {self._limit} bytes")
                raise self.failure
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


def boundary_of(content_type: bytes) -> bytes:
    """The boundary of a `multipart/form-data` content type; 400 if it is not one."""
    kind, _, params = content_type.partition(b";")
    if kind.strip().lower() != MULTIPART:
        raise BadRequest("this endpoint takes multipart/form-data")
    for param in params.split(b";"):
        name, _, value = param.strip().partition(b"=")
        if name.strip().lower() == b"boundary" and value.strip(b' "'):
            return value.strip(b' "')
    raise BadRequest("multipart/form-data without a boundary")


async def read_upload(
    receive: Receive, content_type: bytes, declared: bytes | None, limit: int
) -> Upload:
    """Read until the `model` field's value is complete; the rest is left to stream."""
    size = None
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("invalid Content-Length")
        size = int(declared)
        if size > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
    scanner = _Scanner(boundary_of(content_type))
    data = b""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("client disconnected while sending the request")
        data += message.get("body", b"")
        more = bool(message.get("more_body", False))
        if len(data) > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
        found = scanner.find(data)
        if found is not None:
            return Upload(receive, data, found, size, more, limit)
    raise BadRequest("'model' is required: the form has no 'model' field", param="model")


class _Scanner:
    """Finds the `model` part's value in a growing multipart body, resuming where it stopped."""

    def __init__(self, boundary: bytes) -> None:
        self._delimiter = b"--" + boundary
        self._pos = 0

    def find(self, data: bytes) -> tuple[int, int] | None:
        delimiter = self._delimiter
        while True:
            at = data.find(delimiter, self._pos)
            if at < 0:
                self._pos = max(self._pos, len(data) - len(delimiter))
                return None
            after = at + len(delimiter)
            if data[after : after + 2] == b"--":
                raise BadRequest(
                    "'model' is required: the form has no 'model' field", param="model"
                )
            head_end = data.find(b"\r\n\r\n", after)
            if head_end < 0:
                self._pos = at
                return None
            if _part_name(data[after:head_end]) != b"model":
                self._pos = head_end + 4
                continue
            start = head_end + 4
            end = data.find(b"\r\n" + delimiter, start)
            if (end if end >= 0 else len(data)) - start > MAX_MODEL_BYTES:
                raise BadRequest("the 'model' field is too long", param="model")
            if end < 0:
                self._pos = at
                return None
            if end == start:
                raise BadRequest("'model' must be a non-empty string", param="model")
            return start, end


def _part_name(headers: bytes) -> bytes | None:
    """The `name` of a part's `Content-Disposition: form-data; name="..."`."""
    for line in headers.split(b"\r\n"):
        field, _, value = line.partition(b":")
        if field.strip().lower() != b"content-disposition":
            continue
        for param in value.split(b";"):
            key, _, val = param.strip().partition(b"=")
            if key.strip().lower() == b"name":
                return val.strip().strip(b'"')
    return None
