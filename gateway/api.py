"""The OpenAI-compatible data plane: POST /v1/chat/completions, /v1/completions, /v1/embeddings.

A pure ASGI endpoint (no framework on the hot path). Per request: read the body once under the
size limit → parse it → resolve model/alias/pin → decide (the policy's route plan) → do (the
forwarder) → record. A watcher on `receive` turns a client disconnect into cancellation of the
upstream call. Errors before the first byte become OpenAI-shaped responses with the right status.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from random import Random
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import BadRequest, ClientDisconnected, GatewayError, PayloadTooLarge
from gateway.exchange import CLIENT_CANCEL, Exchange
from gateway.forward import Forwarder
from gateway.routing import RequestContext, RoutePlan
from gateway.runtime import Runtime

REQUEST_ID_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


class ClientLink:
    """The client side of one request: tracks what was sent and whether the client left."""

    __slots__ = ("_send", "complete", "gone", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = self.complete = self.gone = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif not message.get("more_body"):
            self.complete = True
        await self._send(message)

    async def watch(self, receive: Receive, task: asyncio.Task[Any]) -> None:
        """Cancel `task` if the client disconnects before the answer is complete."""
        message = await receive()
        if message["type"] == "http.disconnect" and not self.complete:
            self.gone = True
            task.cancel()


class ProxyEndpoint:
    def __init__(
        self,
        runtime: Callable[[], Runtime],
        forwarder: Forwarder,
        rng: Random,
        record: Callable[[Exchange], None] = lambda ex: None,
    ) -> None:
        self._runtime = runtime
        self._forwarder = forwarder
        self._rng = rng
        self._record = record  # the live store's recorder: synchronous, O(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = self._runtime()  # one config snapshot for the whole request
        loop = asyncio.get_running_loop()
        headers = dict(scope["headers"])
        ex = Exchange(_request_id(headers.get(b"x-request-id")), scope["path"], loop.time())
        link = ClientLink(send)
        rt.metrics.inflight.inc()
        try:
            await self._serve(rt, scope, receive, link, headers, ex)
        finally:
            rt.metrics.inflight.dec()
            ex.duration = loop.time() - ex.started
            rt.metrics.record(ex)
            self._record(ex)

    async def _serve(
        self,
        rt: Runtime,
        scope: Scope,
        receive: Receive,
        link: ClientLink,
        headers: dict[bytes, bytes],
        ex: Exchange,
    ) -> None:
        try:
            body = await _read_body(
                receive, headers.get(b"content-length"), rt.limits.max_body_bytes
            )
            payload = _parse(body)
            pin = headers.get(b"x-gateway-version")
            target = rt.registry.resolve(payload["model"], pin.decode("latin-1") if pin else None)
            model = ex.model = target.model.name
            ex.stream = payload.get("stream") is True
            if target.pinned is not None:
                plan = RoutePlan((target.pinned.id,), "pinned")
            else:
                plan = target.model.policy.plan(RequestContext(headers, payload), self._rng)
            ex.routing_reason = plan.reason
            version = rt.registry.models[model].versions[plan.versions[0]]
            await self._guarded(receive, link, ex, version, payload, scope, rt)
        except GatewayError as err:
            ex.status, ex.outcome = err.status, err.outcome
            if not link.started:
                await _send_error(link, err, ex)

    async def _guarded(
        self,
        receive: Receive,
        link: ClientLink,
        ex: Exchange,
        version: Any,
        payload: dict[str, Any],
        scope: Scope,
        rt: Runtime,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.get_running_loop().create_task(link.watch(receive, task))
        try:
            model = rt.registry.models[version.model]
            await self._forwarder.attempt(
                ex, version, payload, scope["headers"], link.send, model.timeouts, rt.limits
            )
        except asyncio.CancelledError:
            if not link.gone:
                raise
            task.uncancel()
            ex.outcome, ex.status = CLIENT_CANCEL, 499
        finally:
            watcher.cancel()


async def _read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The whole request body, refusing more than `limit` bytes (declared or counted)."""
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("invalid Content-Length")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("client disconnected while sending the request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
        if not message.get("more_body", False):
            return b"".join((*parts, chunk)) if parts else chunk
        parts.append(chunk)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string")
    return payload


def _request_id(given: bytes | None) -> str:
    """The client's x-request-id if it is short and plain, else a fresh random one."""
    if given and len(given) <= 64 and REQUEST_ID_CHARS.issuperset(given):
        return given.decode()
    return os.urandom(12).hex()


async def _send_error(link: ClientLink, err: GatewayError, ex: Exchange) -> None:
    body = err.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", ex.request_id.encode()),
    ]
    if ex.model is not None:
        headers.append((b"x-gateway-model", ex.model.encode()))
    if ex.version is not None:
        headers.append((b"x-gateway-version", ex.version.encode()))
    await link.send({"type": "http.response.start", "status": err.status, "headers": headers})
    await link.send({"type": "http.response.body", "body": body, "more_body": False})
