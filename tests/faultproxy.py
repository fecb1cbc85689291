"""A small TCP fault proxy for integration tests (toxiproxy-like, loopback only).

`FaultProxy(upstream_port)` listens on a free loopback port and relays bytes to the upstream.
It runs its own asyncio event loop in a background thread, so a test (sync or async) switches
toxics with plain method calls while traffic flows. `stop()` (or leaving the `fault_proxy(...)`
context) closes the listener and every connection, stops the loop and joins the thread.

Toxics apply per *exchange*: the toxic current when a request's first bytes arrive governs that
request and its response, so switching toxics never breaks an answer half-way unless asked to.
An exchange starts with the first client→upstream bytes after the previous response bytes (HTTP/1.1
without pipelining, which is what the gateway's pooled client does).

    passthrough()                  relay unchanged
    latency(ms)                    hold each request's first bytes `ms` before relaying
    cut_after_bytes(n, reset=...)  relay the first `n` response bytes, then close (FIN) or RST
    cut_after_headers(reset=...)   relay the response head (through the blank line), then close
    reset()                        RST the client connection as soon as a request arrives
    blackhole()                    accept and read requests, never answer
    inject_header(name, value)     add a header as each request head's last line (an upstream-
                                   only fault, e.g. `x-mock-fault: empty` for this upstream alone)

Every exchange is recorded (`exchanges`): its start time (`time.monotonic()`, comparable with the
test process's clock), the request's `x-request-id` header if it sent one, and the toxic applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

READ_SIZE = 65536
HEAD_LIMIT = 64 << 10
REQUEST_ID_RE = re.compile(rb"\r\nx-request-id:[ \t]*([^\r\n]*)\r\n", re.IGNORECASE)
HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Toxic:
    kind: str = "passthrough"  # passthrough | latency | cut | reset | blackhole | header
    latency_s: float = 0.0
    cut_bytes: int | None = None  # response bytes to relay before closing
    cut_at_head: bool = False  # cut right after the response head instead
    rst: bool = False  # close a cut with RST (SO_LINGER 0) instead of FIN
    settle_s: float = 0.05  # pause between the last relayed byte and a RST
    header: bytes = b""  # a header line added to each request (as the head's last line)


@dataclass(frozen=True, slots=True)
class ProxyExchange:
    started: float  # time.monotonic() when the request's first bytes arrived
    request_id: str | None
    toxic: str


class _Link:
    """One client connection and, once needed, its upstream connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.up_reader: asyncio.StreamReader | None = None
        self.up_writer: asyncio.StreamWriter | None = None
        self.toxic = Toxic()
        self.awaiting_request = True  # the next client bytes start a new exchange
        self.head = b""  # the current request's head, until its end is seen
        self.head_done = True
        self.injected = False  # the current request got the injected header
        self.sent = 0  # response bytes relayed in the current exchange
        self.response_head = b""
        self.closed = False


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.exchanges: list[ProxyExchange] = []
        self.connections = 0
        self._toxic = Toxic()
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL an OpenAI-style upstream entry should use (`.../v1`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FaultProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._accept, "127.0.0.1", 0)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # pragma: no cover - reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"faultproxy->{self.upstream[1]}")
        self._thread.daemon = True
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            fut.result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._close(link)  # every relay task sees its connection end and returns
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:  # pragma: no cover - only a relay stuck in a toxic's sleep
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.sleep(0.01)  # let the transports' close callbacks run

    # -- toxics (callable from any thread) ---------------------------------------------------

    def passthrough(self) -> None:
        self._toxic = Toxic()

    def latency(self, ms: float) -> None:
        self._toxic = Toxic("latency", latency_s=ms / 1000)

    def cut_after_bytes(self, n: int, *, reset: bool = False, settle_s: float = 0.05) -> None:
        self._toxic = Toxic("cut", cut_bytes=n, rst=reset, settle_s=settle_s)

    def cut_after_headers(self, *, reset: bool = False, settle_s: float = 0.05) -> None:
        self._toxic = Toxic("cut", cut_at_head=True, rst=reset, settle_s=settle_s)

    def reset(self) -> None:
        self._toxic = Toxic("reset")

    def blackhole(self) -> None:
        self._toxic = Toxic("blackhole")

    def inject_header(self, name: str, value: str) -> None:
        """Add `name: value` to every request: an upstream-only fault (e.g. `x-mock-fault`)."""
        self._toxic = Toxic("header", header=f"{name}: {value}".encode("latin-1"))

    # -- records ---------------------------------------------------------------------------

    def clear(self) -> None:
        self.exchanges = []

    # -- relay -----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(reader, writer)
        self._links.add(link)
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._client_to_upstream(link)
        except (ConnectionError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            self._close(link)  # the client left (a blackholed link stays open until then)

    async def _client_to_upstream(self, link: _Link) -> None:
        while True:
            data = await link.reader.read(READ_SIZE)
            if not data:
                return
            if link.awaiting_request:
                link.awaiting_request = False
                link.toxic = self._toxic
                link.sent = 0
                link.response_head = b""
                link.head, link.head_done = b"", False
                link.injected = False
                first = True
            else:
                first = False
            request_id = self._scan_head(link, data)
            if first or request_id is not None:
                self._note(link, first, request_id)
            toxic = link.toxic
            if toxic.kind == "reset":
                self._rst(link)
                return
            if toxic.kind == "blackhole":
                continue
            if toxic.header and not link.injected and HEAD_END in data:
                link.injected = True  # last header of the head: it wins over a client's own
                data = data.replace(HEAD_END, b"\r\n" + toxic.header + HEAD_END, 1)
            if first and toxic.latency_s:
                await asyncio.sleep(toxic.latency_s)
                if link.reader.at_eof() or link.writer.is_closing():
                    return  # the client gave up while the request was held: nothing to relay
            if link.up_writer is None:
                link.up_reader, link.up_writer = await asyncio.open_connection(*self.upstream)
                self._spawn(self._upstream_to_client(link))
            link.up_writer.write(data)
            await link.up_writer.drain()

    def _scan_head(self, link: _Link, data: bytes) -> str | None:
        """The request id, once the request head is complete (None before and after)."""
        if link.head_done:
            return None
        link.head = (link.head + data)[:HEAD_LIMIT]
        end = link.head.find(HEAD_END)
        if end < 0 and len(link.head) < HEAD_LIMIT:
            return None
        link.head_done = True
        match = REQUEST_ID_RE.search(link.head[: end + 2 if end >= 0 else None])
        return match.group(1).decode("latin-1").strip() if match else ""

    def _note(self, link: _Link, first: bool, request_id: str | None) -> None:
        if first:
            self.exchanges.append(
                ProxyExchange(time.monotonic(), request_id or None, link.toxic.kind)
            )
        elif request_id and self.exchanges:  # the head spanned reads: fill the id in
            for i in range(len(self.exchanges) - 1, -1, -1):
                if self.exchanges[i].request_id is None:
                    ex = self.exchanges[i]
                    self.exchanges[i] = ProxyExchange(ex.started, request_id, ex.toxic)
                    break

    async def _upstream_to_client(self, link: _Link) -> None:
        assert link.up_reader is not None
        try:
            while True:
                data = await link.up_reader.read(READ_SIZE)
                if not data:
                    break
                link.awaiting_request = True
                toxic = link.toxic
                room = self._cut_room(link, toxic, data)
                if room is not None and room <= len(data):
                    link.writer.write(data[:room])
                    await link.writer.drain()
                    if toxic.rst:
                        await asyncio.sleep(toxic.settle_s)
                        self._rst(link)
                    else:
                        self._close(link)
                    return
                link.sent += len(data)
                link.writer.write(data)
                await link.writer.drain()
        except (ConnectionError, OSError):
            pass
        self._close(link)

    @staticmethod
    def _cut_room(link: _Link, toxic: Toxic, data: bytes) -> int | None:
        """How many of `data`'s bytes to relay before the cut, or None for no cut yet."""
        if toxic.kind != "cut":
            return None
        if toxic.cut_bytes is not None:
            return max(toxic.cut_bytes - link.sent, 0)
        before = len(link.response_head)
        link.response_head = (link.response_head + data)[:HEAD_LIMIT]
        end = link.response_head.find(HEAD_END)
        if end < 0:
            return None
        return end + len(HEAD_END) - before

    def _rst(self, link: _Link) -> None:
        sock = link.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        link.writer.transport.abort()
        self._close(link)

    def _close(self, link: _Link) -> None:
        if link.closed:
            return
        link.closed = True
        self._links.discard(link)
        for writer in (link.writer, link.up_writer):
            if writer is not None:
                writer.close()


@contextlib.contextmanager
def fault_proxy(upstream_port: int) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
