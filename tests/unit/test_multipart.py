"""Multipart uploads: the `model` field is found without reading the file, the rest streams
through under the body limit, and the upstream gets the same bytes with only `model` rewritten."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import BadRequest, ClientDisconnected, PayloadTooLarge
from gateway.proxy.multipart import Upload, read_upload
from gateway.routing.table import VersionEntry

BOUNDARY = b"b0undary"
CONTENT_TYPE = b"multipart/form-data; boundary=" + BOUNDARY
PATH = "/v1/audio/transcriptions"


def form(*parts: tuple[str, bytes]) -> bytes:
    out = b""
    for name, value in parts:
        extra = b'; filename="a.wav"' if name == "file" else b""
        out += b"--" + BOUNDARY + b"\r\n"
        out += b'Content-Disposition: form-data; name="' + name.encode() + b'"' + extra
        out += b"\r\n\r\n" + value + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


class Receiver:
    """`receive` over fixed chunks, counting how many were taken."""

    def __init__(self, body: bytes, size: int) -> None:
        self.chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
        self.taken = 0
        self.drop_at: int | None = None  # the connection drops when this chunk is due

    async def __call__(self) -> dict[str, Any]:
        if self.taken in (len(self.chunks), self.drop_at):
            return {"type": "http.disconnect"}
        chunk = self.chunks[self.taken]
        self.taken += 1
        return {"type": "http.request", "body": chunk, "more_body": self.taken < len(self.chunks)}


def version(upstream_model: str = "whisper-large") -> VersionEntry:
    return VersionEntry(
        "media", "m1", upstream_model, {PATH: "http://up/v1/audio/transcriptions"},
        "http://up/v1", None, {}, 0, (), None,
    )  # fmt: skip


async def drain(upload: Upload) -> tuple[bytes, int | None]:
    _, body, length = upload.target(version(), PATH)
    if isinstance(body, bytes | None):
        return body or b"", length
    return b"".join([chunk async for chunk in body]), length


async def test_model_found_before_the_file_is_read() -> None:
    audio = bytes(range(256)) * 400
    body = form(("model", b"media"), ("language", b"en"), ("file", audio))
    receive = Receiver(body, 64)
    upload = await read_upload(receive, CONTENT_TYPE, str(len(body)).encode(), 1 << 20)
    assert upload.model == "media" and not upload.replayable
    assert receive.taken <= 2  # the model part ends within the first 128 bytes
    sent, length = await drain(upload)
    assert sent == body.replace(b"\r\n\r\nmedia\r\n", b"\r\n\r\nwhisper-large\r\n")
    assert length == len(sent)  # Content-Length adjusted for the new model name


async def test_model_after_the_file_is_found_by_reading_on() -> None:
    body = form(("file", b"x" * 5000), ("model", b"media"))
    upload = await read_upload(Receiver(body, 1000), CONTENT_TYPE, None, 1 << 20)
    assert upload.model == "media" and upload.replayable  # it all had to be read
    sent, length = await drain(upload)
    assert b"whisper-large" in sent and length == len(sent)


async def test_streamed_rest_over_the_limit_fails_as_the_clients_413() -> None:
    body = form(("model", b"media"), ("file", b"x" * 5000))
    upload = await read_upload(Receiver(body, 100), CONTENT_TYPE, None, 2048)  # chunked, no length
    with pytest.raises(PayloadTooLarge):
        await drain(upload)
    assert isinstance(upload.failure, PayloadTooLarge)


async def test_client_leaving_mid_upload_is_recorded() -> None:
    body = form(("model", b"media"), ("file", b"x" * 5000))
    receive = Receiver(body, 100)
    upload = await read_upload(receive, CONTENT_TYPE, None, 1 << 20)
    receive.drop_at = receive.taken + 1  # one more chunk, then the connection drops
    with pytest.raises(ClientDisconnected):
        await drain(upload)
    assert isinstance(upload.failure, ClientDisconnected)


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (b"application/json", b"{}", "multipart/form-data"),
        (b"multipart/form-data", form(("model", b"m")), "boundary"),
        (CONTENT_TYPE, form(("file", b"abc")), "'model' is required"),
        (CONTENT_TYPE, form(("model", b"")), "non-empty"),
        (CONTENT_TYPE, form(("model", b"m" * 300)), "too long"),
    ],
)
async def test_bad_forms_are_400(content_type: bytes, body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        await read_upload(Receiver(body, 1000), content_type, None, 1 << 20)


async def test_declared_too_large_is_413_before_reading() -> None:
    receive = Receiver(form(("model", b"m")), 10)
    with pytest.raises(PayloadTooLarge):
        await read_upload(receive, CONTENT_TYPE, b"999999", 1024)
    assert receive.taken == 0
