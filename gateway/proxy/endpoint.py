"""The OpenAI-compatible data plane: POST /v1/chat/completions, /v1/completions, /v1/embeddings.

A pure ASGI endpoint (no framework on the hot path). Per request: admit (global in-flight cap) →
read the body once under the size limit → parse → resolve model/alias/pin → decide (the policy's
plan, the fallback order, version health) → do (`PlanRunner`: attempts, retries) → record. A
client disconnect cancels the upstream call (through the edge's per-connection hook, or a watcher
on `receive` under other servers); the drain deadline cancels the same way and ends a started
stream with a `server_shutdown` error event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from random import Random, getrandbits
from time import perf_counter
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import (
    BadRequest,
    ClientDisconnected,
    GatewayError,
    PayloadTooLarge,
    Unavailable,
)
from gateway.exchange import CLIENT_CANCEL, Exchange
from gateway.infra.tasks import CurrentTask
from gateway.observability.logs import AccessLog
from gateway.observability.tracing import RequestTracer
from gateway.proxy.attempts import PlanRunner, attempt_order
from gateway.proxy.edge import DISCONNECT
from gateway.proxy.shadow import Shadow
from gateway.proxy.sse import sse_error
from gateway.ratelimit import Limiter
from gateway.ratelimit.gcra import Ticket
from gateway.resilience.health import HealthTable
from gateway.routing import RequestContext
from gateway.routing.table import Target
from gateway.runtime.current import Current
from gateway.runtime.snapshot import Runtime

REQUEST_ID_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


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


class ProxyEndpoint:
    """The data plane's ASGI callable; one per process. Owns the requests in flight (their
    count, for the global cap and `gateway_inflight`, and their tasks, for the drain deadline)."""

    def __init__(
        self,
        current: Current,
        runner: PlanRunner,
        health: HealthTable,
        limiter: Limiter,
        access: AccessLog,
        rng: Random,
        record: Callable[[Exchange], None] = lambda ex: None,
        shadow: Shadow | None = None,
        tracer: RequestTracer | None = None,
    ) -> None:
        self._current = current
        self._runner = runner
        self._health = health
        self._limiter = limiter
        self._access = access
        self._rng = rng
        self._record = record  # the live store's and the canary's recorders: synchronous, O(1)
        self._shadow = shadow  # copies to `routing.shadow` (synchronous, O(1); runs apart)
        self._tracer = tracer  # None with tracing off: one `is None` check per request
        self._current_task = CurrentTask()
        self.inflight = 0  # client requests in progress
        self.tasks: set[asyncio.Task[Any]] = set()
        self.shutting_down = False  # drain deadline passed: in-flight work is being ended

    def end_inflight(self) -> None:
        """The drain deadline: cancel what is still running (streams end with an error event)."""
        self.shutting_down = True
        for task in list(self.tasks):
            task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit, then run the attempts while watching for the client leaving or the drain
        deadline (one coroutine frame: every resume of the request passes through it)."""
        rt = self._current.runtime  # one config snapshot for the whole request
        headers = dict(scope["headers"])
        ex = Exchange(_request_id(headers.get(b"x-request-id")), scope["path"], perf_counter())
        if self._tracer is not None:
            ex.trace = self._tracer.start(headers, ex)
        task = self._current_task()
        link = ClientLink(send, task)
        self.inflight += 1
        self.tasks.add(task)
        ticket: Ticket | None = None
        hooks: set[Callable[[], None]] | None = None
        watcher: asyncio.Task[None] | None = None
        try:
            if self.inflight > rt.limits.max_inflight:
                raise Unavailable(
                    "gateway overloaded: too many requests in flight", code="overloaded"
                )
            target, order, payload, ticket = await self._admit(rt, scope, receive, headers, ex)
            link.stream = ex.stream
            if ex.trace is not None:
                ex.trace.routed(order)
            hooks = scope.get(DISCONNECT)
            if hooks is not None:
                hooks.add(link.lost)
            else:
                watcher = asyncio.get_running_loop().create_task(link.watch(receive))
            pinned = target.pinned is not None
            await self._runner.run(
                ex, target.model, order, pinned, payload, scope["headers"], link.send, rt.limits
            )
        except asyncio.CancelledError:
            if not (link.gone or self.shutting_down):
                raise
            task.uncancel()
            await _cancelled(link, ex, rt)
        except GatewayError as err:
            await _fail(link, err, ex, rt)
        finally:
            if hooks is not None:
                hooks.discard(link.lost)
            if watcher is not None:
                watcher.cancel()
            if ticket is not None:
                self._limiter.settle(ticket, ex.prompt_tokens + ex.completion_tokens)
            self.inflight -= 1
            self.tasks.discard(task)
            ex.duration = perf_counter() - ex.started
            rt.metrics.record(ex)
            self._access.write(ex)
            self._record(ex)
            if ex.trace is not None:
                ex.trace.end(ex)

    async def _admit(
        self,
        rt: Runtime,
        scope: Scope,
        receive: Receive,
        headers: dict[bytes, bytes],
        ex: Exchange,
    ) -> tuple[Target, tuple[str, ...], dict[str, Any], Ticket | None]:
        """Authenticate, read and parse, resolve, decide, take the rate-limit ticket: what
        the attempts then do (returned, not awaited from here, to keep the await chain short)."""
        client = rt.keys.authenticate(headers.get(b"authorization"))
        ex.client = client.id
        body = await _read_body(receive, headers.get(b"content-length"), rt.limits.max_body_bytes)
        payload = _parse(body)
        pin = headers.get(b"x-gateway-version")
        requested: str = payload["model"]
        header_pin = pin.decode("latin-1") if pin is not None else None
        target = rt.registry.resolve(requested, header_pin, client.may_use)
        client.check(target.model.name, pin is not None or "@" in requested)
        ex.model = target.model.name
        ex.stream = payload.get("stream") is True
        order = self._decide(target, headers, payload, ex)
        limit = client.rate_limit
        ticket = None
        if limit.requests_per_minute is not None or limit.tokens_per_minute is not None:
            ticket = await self._limiter.reserve(client.id, limit, payload, len(body))
        if self._shadow is not None:  # only admitted requests are copied
            self._shadow.maybe(rt, target.model.name, payload, scope["headers"], ex)
        return target, order, payload, ticket

    def _decide(
        self, target: Target, headers: dict[bytes, bytes], payload: dict[str, Any], ex: Exchange
    ) -> tuple[str, ...]:
        """The versions to try, in order: a pin alone, or the plan filtered by version health."""
        if target.pinned is not None:
            ex.routing_reason = "pinned"
            return (target.pinned.id,)
        model = target.model
        plan = model.policy.plan(RequestContext(headers, payload, ex.client), self._rng)
        ex.routing_reason = plan.reason
        ordered = attempt_order(plan.versions[0], plan.versions, model.fallback)
        healthy = self._health.order(model.name, ordered, model.ejection)
        if healthy is None:
            raise Unavailable(
                f"every version of {model.name!r} is failing", code="no_healthy_version"
            )
        return healthy


async def _cancelled(link: ClientLink, ex: Exchange, rt: Runtime) -> None:
    """The request was cancelled because the client left or the drain deadline passed."""
    if link.gone:
        ex.outcome, ex.status = CLIENT_CANCEL, 499
        return
    ex.outcome = "shutdown"
    if not link.started:
        await _fail(link, Unavailable("gateway shutting down", code="server_shutdown"), ex, rt)
    elif not link.complete:
        event = sse_error("gateway shutting down", "unavailable", "server_shutdown")
        body = event if link.stream else b""
        await link.send({"type": "http.response.body", "body": body, "more_body": False})


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
    """The client's x-request-id if it is short and plain, else a fresh random one (96 bits
    from `random`: ids need to be unique, not secret, and `os.urandom` is a system call)."""
    if given and len(given) <= 64 and REQUEST_ID_CHARS.issuperset(given):
        return given.decode()
    return getrandbits(96).to_bytes(12).hex()


async def _fail(link: ClientLink, err: GatewayError, ex: Exchange, rt: Runtime) -> None:
    """Record `err` and, if nothing was sent yet, answer it in OpenAI's error shape."""
    ex.status, ex.outcome = err.status, err.outcome
    if err.status in (413, 503) and err.code:
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
