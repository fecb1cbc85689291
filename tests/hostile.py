"""A hostile upstream and a sentinel listener, for SSRF and unsafe-consumption tests (SEC2, SEC6).

`HostileUpstream` is a raw asyncio HTTP server in a background thread whose answer is chosen by
the request path's last segment's mode (set per test via `mode`); `Sentinel` only counts
connections: a destination no request may ever reach.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

CHUNK = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'


def _http(status: str, headers: list[bytes], body: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + b"\r\n"
        + body
    )


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro_factory: Callable[[], object]) -> object:
        return asyncio.run_coroutine_threadsafe(coro_factory(), self.loop).result(5)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Sentinel(_Loop):
    def __init__(self) -> None:
        super().__init__()
        self.connections = 0
        self.server = self.run(lambda: asyncio.start_server(self._on, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _on(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    def close(self) -> None:
        self.server.close()  # type: ignore[attr-defined]
        self.stop()


class HostileUpstream(_Loop):
    def __init__(self, redirect_to: int = 0) -> None:
        super().__init__()
        self.mode = "ok"
        self.redirect_to = redirect_to
        self.server = self.run(lambda: asyncio.start_server(self._on, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    async def _on(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            await reader.readexactly(length)
            await self._answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _answer(self, w: asyncio.StreamWriter) -> None:
        sse = [b"content-type: text/event-stream", b"transfer-encoding: chunked"]
        mode = self.mode
        if mode == "redirect":
            w.write(
                _http(
                    "302 Found",
                    [
                        f"location: http://127.0.0.1:{self.redirect_to}/v1/chat/completions".encode(),
                        b"content-length: 0",
                    ],
                )
            )
        elif mode == "huge-json":
            w.write(
                _http(
                    "200 OK",
                    [b"content-type: application/json", b"content-length: %d" % (40 << 20)],
                )
            )
            for _ in range(40 << 4):
                w.write(b"x" * (64 << 10))
                await w.drain()
        elif mode == "endless-line":
            w.write(_http("200 OK", sse))
            w.write(b"%x\r\ndata: {\r\n" % 7)
            for _ in range(64):
                w.write(b"%x\r\n%s\r\n" % (64 << 10, b"a" * (64 << 10)))
                await w.drain()
        elif mode == "done-then-more":
            body = CHUNK + b"data: [DONE]\n\n" + CHUNK + b"event: weird\ndata: {}\n\n"
            w.write(
                _http(
                    "200 OK",
                    [b"content-type: text/event-stream", b"content-length: %d" % len(body)],
                    body,
                )
            )
        elif mode == "bad-utf8-and-headers":
            headers = [
                b"content-type: application/json",
                b"set-cookie: a=b",
                b"x-h: a\r\nx-injected: 1",
            ]
            headers += [b"x-many-%d: v" % i for i in range(1000)]
            body = b'{"text": "\xff\xfe bad"}'
            w.write(_http("200 OK", [*headers, b"content-length: %d" % len(body)], body))
        elif mode == "bad-utf8":
            body = b'{"text": "\xff\xfe bad"}'
            headers = [b"content-type: application/json", b"set-cookie: a=b", b"authorization: up"]
            w.write(_http("200 OK", [*headers, b"content-length: %d" % len(body)], body))
        elif mode == "short-body":
            w.write(
                _http(
                    "200 OK",
                    [b"content-type: application/json", b"content-length: 100"],
                    b'{"a": 1}',
                )
            )
        elif mode == "switching":
            w.write(
                _http("101 Switching Protocols", [b"upgrade: websocket", b"connection: upgrade"])
            )
        await w.drain()

    def close(self) -> None:
        self.server.close()  # type: ignore[attr-defined]
        self.stop()
