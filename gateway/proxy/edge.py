"""The HTTP edge: limits enforced while a request's head is parsed, before the app sees it.

Owns a subclass of uvicorn's httptools protocol (the parser that already rejects smuggling-shaped
requests — Content-Length with Transfer-Encoding, duplicate or malformed lengths, obfuscated
encodings, obs-fold — with 400 and closes). On top of it: at most `max_headers` header fields
and `max_header_bytes` of request head (431, counted as bytes arrive, so a giant header never
gets buffered), exactly one plain `Host` (400; HTTP/1.0 may omit it), at most one
`Authorization` (400: routes must never disagree about which one counts), and a deadline for
the whole head to arrive (`header_timeout_s`), which closes slowloris connections.
Every refusal closes the connection.

Two things are done per server rather than per request, to keep timers and tasks off the hot
path: one sweeper every `SWEEP_S` closes connections whose head is overdue (so the deadline holds
to within `SWEEP_S`), and a lost connection calls the callbacks its requests registered in
`scope[DISCONNECT]` (the data plane cancels the upstream call from there instead of running a
watcher task per request).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.config.schema import Limits

BAD_HOST_CHARS = frozenset(b"/?#@ \t\\")
REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}
DISCONNECT = "gateway.disconnect"  # scope key: the connection's set of on-disconnect callbacks
SWEEP_S = 0.25


class _Refuse(Exception):
    """Raised from a parser callback; the parser error it becomes is answered with `status`."""


DEFAULT_LIMITS = Limits()


@runtime_checkable
class EdgeLimits(Protocol):
    """An app that tells the edge its current limits (they follow config reloads)."""

    def edge_limits(self) -> Limits: ...


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Limits come from the served app when it offers them (`EdgeLimits`), else the defaults."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = _limits_of(self.app)
        self.max_headers = limits.max_headers
        self.max_header_bytes = limits.max_header_bytes
        self.header_timeout_s = limits.header_timeout_s
        self._head_bytes = 0
        self._in_head = True
        self._head_started = self.loop.time()
        self._refusal: tuple[int, str] | None = None
        self._on_disconnect: set[Callable[[], None]] = set()
        if not getattr(self.server_state, "gateway_sweeping", False):
            self.server_state.gateway_sweeping = True  # type: ignore[attr-defined]
            self.loop.call_later(SWEEP_S, _sweep, self.loop, self.server_state)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for callback in list(self._on_disconnect):
            callback()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)  # still no end of head: all of it was head
            if self._head_bytes > self.max_header_bytes:
                self._refuse(431, "request head too large")

    def send_400_response(self, msg: str) -> None:
        refusal, self._refusal = self._refusal, None
        if refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse(*refusal)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[DISCONNECT] = self._on_disconnect  # type: ignore[literal-required]
        self._in_head, self._head_bytes = True, 0
        self._head_started = self.loop.time()

    def on_headers_complete(self) -> None:
        """Header count and Host checked once the head is parsed (it is already capped at
        `max_header_bytes` as it arrives, so nothing unbounded was buffered meanwhile)."""
        self._in_head = False
        headers = self.headers  # names lower-cased by uvicorn's on_header
        if len(headers) > self.max_headers:
            self._refusal = (431, f"more than {self.max_headers} header fields")
            raise _Refuse
        hosts = [value for name, value in headers if name == b"host"]
        if len(hosts) > 1 or (hosts and BAD_HOST_CHARS.intersection(hosts[0])):
            self._refusal = (400, "invalid or repeated Host header")
            raise _Refuse
        if not hosts and self.parser.get_http_version() != "1.0":
            self._refusal = (400, "missing Host header (required in HTTP/1.1)")
            raise _Refuse
        if sum(name == b"authorization" for name, _ in headers) > 1:
            self._refusal = (400, "repeated Authorization header")
            raise _Refuse
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:  # a request cycle was made (not an upgrade)
            self.cycle.transport = HeadWithBody(self.transport, self.loop)  # type: ignore[assignment]

    def head_overdue(self, now: float) -> bool:
        return self._in_head and now - self._head_started > self.header_timeout_s

    def _refuse(self, status: int, message: str) -> None:
        body = message.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, REASONS[status], len(body), body)
        )
        self.transport.close()


class HeadWithBody:
    """The transport as a request's cycle sees it: the response head (written on
    `http.response.start`) waits for the first body write, and both leave in one system call
    instead of two. A head still waiting at the end of the loop iteration (a stream whose first
    chunk is not there yet) is flushed then; an interim `100 Continue` goes out at once."""

    __slots__ = ("_head", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.writelines((head, data))
        elif data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 100 "):
            self._head = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _limits_of(app: object) -> Limits:
    """The served app's limits, found through uvicorn's middleware wrappers (each keeps the app
    it wraps as `.app`), or the defaults."""
    for _ in range(8):
        if isinstance(app, EdgeLimits):
            return app.edge_limits()
        app = getattr(app, "app", None)
    return DEFAULT_LIMITS


def _sweep(loop: asyncio.AbstractEventLoop, state: Any) -> None:
    """Close connections whose request head is overdue; runs every `SWEEP_S` while the server
    has connections (the next connection starts it again)."""
    now = loop.time()
    for conn in list(state.connections):
        overdue = isinstance(conn, GuardedHttpToolsProtocol) and conn.head_overdue(now)
        if overdue and not conn.transport.is_closing():
            conn.transport.close()
    if state.connections:
        loop.call_later(SWEEP_S, _sweep, loop, state)
    else:
        state.gateway_sweeping = False
