"""The client side of one request: what was sent to it, whether it left, and the answers the
endpoint gives it itself (an error in OpenAI's shape; the end of a request cancelled because the
client left or the drain deadline passed)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from starlette.types import Message, Receive, Send

from gateway.errors import GatewayError, KeyOverloaded, Unavailable
from gateway.exchange import CLIENT_CANCEL, Exchange
from gateway.proxy.sse import sse_error
from gateway.runtime.snapshot import Runtime


class ClientLink:
    """The client side of one request: tracks what was sent and whether the client left."""

    __slots__ = ("_send", "_task", "complete", "gone", "started", "stream")

    def __init__(self, send: Send, task: asyncio.Task[Any]) -> None:
        self._send = send
        self._task = task
        self.started = self.complete = self.gone = self.stream = False

    def send(self, message: Message) -> Awaitable[None]:
        """Note the progress, then hand over the server's own send (no coroutine of ours)."""
        if message["type"] == "http.response.start":
            self.started = True
        elif not message.get("more_body"):
            self.complete = True
        return self._send(message)

    def lost(self) -> None:
        """The client disconnected: cancel the request's task unless the answer was complete."""
        if not self.complete:
            self.gone = True
            self._task.cancel()

    async def watch(self, receive: Receive) -> None:
        """For servers without the edge's disconnect hook: wait for the disconnect message."""
        message = await receive()
        if message["type"] == "http.disconnect":
            self.lost()


async def cancelled(link: ClientLink, ex: Exchange, rt: Runtime) -> None:
    """The request was cancelled because the client left or the drain deadline passed."""
    if link.gone:
        ex.outcome, ex.status = CLIENT_CANCEL, 499
        return
    ex.outcome = "shutdown"
    if not link.started:
        await fail(link, Unavailable("gateway shutting down", code="server_shutdown"), ex, rt)
    elif not link.complete:
        event = sse_error("gateway shutting down", "unavailable", "server_shutdown")
        body = event if link.stream else b""
        await link.send({"type": "http.response.body", "body": body, "more_body": False})


async def fail(link: ClientLink, err: GatewayError, ex: Exchange, rt: Runtime) -> None:
    """Record `err` and, if nothing was sent yet, answer it in OpenAI's error shape."""
    ex.status, ex.outcome = err.status, err.outcome
    if (err.status in (408, 413, 503) or type(err) is KeyOverloaded) and err.code:
        ex.reason = err.code
    if link.started:
        return
    body = err.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", ex.request_id.encode()),
        (b"x-gateway-config-revision", rt.revision.encode()),
    ]
    headers.extend(err.headers())
    if ex.model is not None:
        headers.append((b"x-gateway-model", ex.model.encode()))
    if ex.version is not None:
        headers.append((b"x-gateway-version", ex.version.encode()))
    await link.send({"type": "http.response.start", "status": err.status, "headers": headers})
    await link.send({"type": "http.response.body", "body": body, "more_body": False})
