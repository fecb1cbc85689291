"""The response head waits for the first body write, so both leave in one system call."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.proxy.edge import HeadWithBody


class RecordingTransport:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writelines(self, parts: tuple[bytes, ...]) -> None:
        self.calls.append(("writelines", b"".join(parts)))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


async def wrapped() -> tuple[HeadWithBody, RecordingTransport]:
    transport = RecordingTransport()
    return HeadWithBody(transport, asyncio.get_running_loop()), transport  # type: ignore[arg-type]


async def test_head_and_body_leave_together() -> None:
    view, transport = await wrapped()
    view.write(HEAD)
    assert transport.calls == []
    view.write(b"ok")
    await asyncio.sleep(0)  # the pending flush finds nothing left to do
    assert transport.calls == [("writelines", HEAD + b"ok")]


async def test_a_head_without_body_yet_is_flushed_at_the_end_of_the_iteration() -> None:
    view, transport = await wrapped()
    view.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    await asyncio.sleep(0)
    assert transport.calls == [("write", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")]
    view.write(b"5\r\nhello\r\n")
    assert transport.calls[-1] == ("write", b"5\r\nhello\r\n")


async def test_interim_continue_and_closing_are_never_held() -> None:
    view, transport = await wrapped()
    view.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert transport.calls == [("write", b"HTTP/1.1 100 Continue\r\n\r\n")]
    view.write(HEAD)
    view.close()  # a held head goes out before the connection closes
    assert transport.calls[1:] == [("write", HEAD), ("close", None)]
    assert view.is_closing() and view.get_extra_info("peername") == "info:peername"
    await asyncio.sleep(0)
    assert len(transport.calls) == 3
