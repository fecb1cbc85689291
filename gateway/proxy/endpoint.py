"""The OpenAI-compatible data plane: the model endpoints (`POST /v1/chat/completions`,
`/v1/completions`, `/v1/embeddings`, `/v1/responses`, `/v1/images/generations`,
`/v1/audio/speech`, `/v1/audio/transcriptions`, `/v1/moderations`, `/v1/rerank`) and the calls on
a response id (`/v1/responses/{id}[/cancel|/input_items]`, see `proxy/responses.py`).

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

from gateway.auth import Client
from gateway.config.schema import Limits
from gateway.errors import (
    BadRequest,
    BodyTimeout,
    ClientDisconnected,
    GatewayError,
    KeyOverloaded,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    StoreError,
    Unavailable,
)
from gateway.exchange import CLIENT_CANCEL, Exchange
from gateway.infra.tasks import CurrentTask
from gateway.livestats.responses import Owner, ResponseIndex
from gateway.observability.logs import AccessLog
from gateway.observability.tracing import RequestTracer
from gateway.proxy.attempts import PlanRunner, attempt_order
from gateway.proxy.edge import DISCONNECT
from gateway.proxy.forward import Outgoing
from gateway.proxy.multipart import Upload, read_upload
from gateway.proxy.responses import ROUTES, ById, Capture, Forget, split_path
from gateway.proxy.shadow import Shadow
from gateway.proxy.sse import sse_error
from gateway.proxy.usage import ask_for_usage, estimate_usage
from gateway.ratelimit import Limiter
from gateway.ratelimit.gcra import Ticket, output_cap
from gateway.ratelimit.openended import OpenEnded
from gateway.resilience.health import HealthTable
from gateway.routing import RequestContext
from gateway.routing.table import PROXY_PATHS, RESPONSES_PATH, Target
from gateway.runtime.current import Current
from gateway.runtime.snapshot import Runtime

REQUEST_ID_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
MODEL_ROUTES = frozenset(f"/v1{p}" for p in PROXY_PATHS)
USAGE_OPTION_ROUTES = frozenset(("/v1/chat/completions", "/v1/completions"))
UPLOAD_ROUTES = frozenset(("/v1/audio/transcriptions",))  # multipart, streamed through
# answers of any size unless the request caps them (`gateway.ratelimit.openended`)
OPEN_ENDED_ROUTES = frozenset(("/v1/chat/completions", "/v1/completions", RESPONSES_PATH))
Admitted = tuple[
    Target, tuple[str, ...], dict[str, Any] | Outgoing, Ticket | None, Callable[[Send], Send] | None
]


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
        index: ResponseIndex | None = None,
        tracer: RequestTracer | None = None,
    ) -> None:
        self._current = current
        self._runner = runner
        self._deadlines = runner.forwarder.deadlines  # the body deadline shares its timers
        self._health = health
        self._limiter = limiter
        self._access = access
        self._rng = rng
        self._record = record  # the live store's and the canary's recorders: synchronous, O(1)
        self._shadow = shadow  # copies to `routing.shadow` (synchronous, O(1); runs apart)
        self._index = index  # response id -> the version that created it
        self._tracer = tracer  # None with tracing off: one `is None` check per request
        self._current_task = CurrentTask()
        self.inflight = 0  # client requests in progress
        self._key_inflight: dict[str, int] = {}  # API key id -> its requests in progress
        self.open_ended = OpenEnded()  # what token-limited keys' uncapped requests reserve
        self.pending_bodies = PendingBodies()
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
        payload: dict[str, Any] | Outgoing | None = None
        try:
            if self.inflight > rt.limits.max_inflight:
                raise Unavailable(
                    "gateway overloaded: too many requests in flight", code="overloaded"
                )
            admit = self._admit if ex.path in MODEL_ROUTES else self._admit_by_id
            target, order, payload, ticket, wrap = await admit(rt, scope, receive, headers, ex)
            link.stream = ex.stream
            if ex.trace is not None:
                ex.trace.routed(order)
            hooks = scope.get(DISCONNECT)
            if hooks is not None:
                hooks.add(link.lost)
            elif type(payload) is not Upload:  # an upload still reads `receive` itself
                watcher = asyncio.get_running_loop().create_task(link.watch(receive))
            pinned = target.pinned is not None
            send_ = link.send if wrap is None else wrap(link.send)
            await self._runner.run(
                ex, target.model, order, pinned, payload, scope["headers"], send_, rt.limits
            )
        except asyncio.CancelledError:
            if not (link.gone or self.shutting_down):
                raise
            task.uncancel()
            await _cancelled(link, ex, rt)
        except GatewayError as err:
            # an upload whose client side broke is the client's failure, not the upstream's
            broken = payload.failure if type(payload) is Upload else None
            await _fail(link, broken or err, ex, rt)
        finally:
            if hooks is not None:
                hooks.discard(link.lost)
            if watcher is not None:
                watcher.cancel()
            if ex.status == 200 and ex.metered and not (ex.prompt_tokens or ex.completion_tokens):
                estimate_usage(ex)
            if ticket is not None:
                self._limiter.settle(ticket, ex.prompt_tokens + ex.completion_tokens)
            if ex.open_ended and ex.status == 200:
                self.open_ended.learn(ex.client, ex.completion_tokens)
            if ex.holds_turn:  # settled and learnt first: the next is judged with this one
                self.open_ended.release(ex.client)
            self.inflight -= 1
            if ex.holds_slot:
                self._release(ex.client)
            self.tasks.discard(task)
            ex.duration = perf_counter() - ex.started
            rt.metrics.record(ex)
            self._access.write(ex)
            self._record(ex)
            if ex.trace is not None:
                ex.trace.end(ex)

    def _authenticate(self, rt: Runtime, headers: dict[bytes, bytes], ex: Exchange) -> Client:
        """The caller's key (401 if none), counted in its in-flight requests from here on (429
        past its cap: one key's slow or stuck requests can never take every slot)."""
        client = rt.keys.authenticate(headers.get(b"authorization"))
        ex.client = client.id
        if not rt.keys.open:
            held = self._key_inflight.get(client.id, 0)
            cap = client.max_inflight or max(1, rt.limits.max_inflight // 2)
            if held >= cap:
                raise KeyOverloaded(f"this API key already has {held} requests in flight")
            self._key_inflight[client.id] = held + 1
            ex.holds_slot = True
        return client

    def _release(self, key: str) -> None:
        held = self._key_inflight[key] - 1
        if held:
            self._key_inflight[key] = held
        else:
            del self._key_inflight[key]

    async def _admit(
        self,
        rt: Runtime,
        scope: Scope,
        receive: Receive,
        headers: dict[bytes, bytes],
        ex: Exchange,
    ) -> Admitted:
        """Authenticate, read and parse, resolve, decide, take the rate-limit ticket: what
        the attempts then do (returned, not awaited from here, to keep the await chain short)."""
        client = self._authenticate(rt, headers, ex)
        limit = client.rate_limit
        ticket = None
        if limit.tokens_per_minute is None and limit.requests_per_minute is not None:
            # requests only: charged on the head, before the body (which slow clients drag out)
            ticket = await self._limiter.reserve(client.id, limit, {}, 0)
        path = ex.path
        payload: dict[str, Any] | Upload
        if path in UPLOAD_ROUTES:
            payload = await read_upload(
                receive,
                headers.get(b"content-type", b""),
                headers.get(b"content-length"),
                rt.limits.max_body_bytes,
            )
            requested, size = payload.model, payload.size
        else:
            body = await self._read_body_in_time(receive, headers, rt.limits)
            payload = _parse(body)
            requested, size = payload["model"], len(body)
        pin = headers.get(b"x-gateway-version")
        header_pin = pin.decode("latin-1") if pin is not None else None
        target = rt.registry.resolve(requested, header_pin, client.may_use, client.check)
        ex.model = target.model.name
        wrap = None
        if path == RESPONSES_PATH and type(payload) is dict:
            target = await self._follow_up(target, payload)
            if self._index is not None and payload.get("store") is not False:
                wrap = Capture.wrapper(ex, self._index, target.model.name)
        _check_served(target, path)
        fields = payload if type(payload) is dict else {}
        ex.stream = fields.get("stream") is True
        ex.request_bytes = size
        if ex.stream and path in USAGE_OPTION_ROUTES:
            ask_for_usage(fields, ex)
        order = self._decide(target, headers, fields, ex)
        if target.pinned is not None and fields.get("previous_response_id") is not None:
            ex.routing_reason = "previous_response"
        if limit.tokens_per_minute is not None:  # tokens need the body: charged together now
            capped: dict[str, Any] = fields
            if path in OPEN_ENDED_ROUTES and output_cap(fields) is None:
                ex.open_ended = True
                expected = await self.open_ended.turn_or_expected(client.id)
                ex.holds_turn = expected is None
                if expected is not None:  # reserve what this key's answers have been using
                    room = max(1, limit.tokens_per_minute - size // 4)  # never beyond the limit
                    capped = {"max_tokens": min(expected, room)}
            ticket = await self._limiter.reserve(client.id, limit, capped, size)
        if self._shadow is not None and fields and ex.routing_reason != "previous_response":
            self._shadow.maybe(rt, target.model.name, fields, scope["headers"], ex)
        return target, order, payload, ticket, wrap

    async def _follow_up(self, target: Target, payload: dict[str, Any]) -> Target:
        """A `previous_response_id` pins the request to the version that created it."""
        previous = payload.get("previous_response_id")
        if previous is None:
            return target
        if not isinstance(previous, str) or not previous:
            raise BadRequest(
                "'previous_response_id' must be a non-empty string", param="previous_response_id"
            )
        model_name, vid = await self._owner(previous)
        model = target.model
        if model_name != model.name:
            raise BadRequest(
                f"previous_response_id {previous!r} belongs to model {model_name!r}, "
                f"not {model.name!r}"
            )
        if vid not in model.versions:
            raise NotFound(
                f"response {previous!r} was created by version {vid!r} of {model_name!r}, "
                "which is no longer configured",
                code="response_version_gone",
            )
        if target.pinned is not None and target.pinned.id != vid:
            raise BadRequest(
                f"conflicting pins: previous_response_id {previous!r} was created by version "
                f"{vid!r}, the request pins {target.pinned.id!r}"
            )
        return Target(model, model.versions[vid])

    async def _owner(self, rid: str) -> Owner:
        """The (model, version) that created response `rid`; 404 if unknown, 503 if the shared
        store cannot say."""
        owner = None
        if self._index is not None:
            try:
                owner = await self._index.lookup(rid)
            except StoreError:
                raise Unavailable(
                    "cannot look up the response id now (shared store unavailable)",
                    code="response_store_unavailable",
                ) from None
        if owner is None:
            raise NotFound(f"no response with id {rid!r}", code="response_not_found")
        return owner

    async def _admit_by_id(
        self,
        rt: Runtime,
        scope: Scope,
        receive: Receive,
        headers: dict[bytes, bytes],
        ex: Exchange,
    ) -> Admitted:
        """A call on a response id: routed to the version that created it, never elsewhere."""
        client = self._authenticate(rt, headers, ex)
        limit = client.rate_limit
        ticket = None
        if limit.tokens_per_minute is None and limit.requests_per_minute is not None:
            # requests only: charged on the head, before the body (which slow clients drag out)
            ticket = await self._limiter.reserve(client.id, limit, {}, 0)
        parsed = split_path(ex.path)
        if parsed is None:
            raise NotFound(f"no endpoint {ex.path}", code="unknown_url")
        rid, suffix = parsed
        method: str = scope["method"]
        if method not in ROUTES[suffix]:
            raise MethodNotAllowed(f"use {' or '.join(ROUTES[suffix])} here", ROUTES[suffix])
        body = await self._read_body_in_time(receive, headers, rt.limits)
        model_name, vid = await self._owner(rid)
        model = rt.registry.models.get(model_name)
        if model is None or not client.may_use(model_name):
            raise NotFound(f"no response with id {rid!r}", code="response_not_found")
        version = model.versions.get(vid)
        if version is None:
            raise NotFound(
                f"response {rid!r} was created by version {vid!r} of {model_name!r}, which is "
                "no longer configured",
                code="response_version_gone",
            )
        ex.model, ex.routing_reason, ex.metered = model_name, "response_id", False
        ex.stream = b"stream=true" in scope["query_string"]
        target = Target(model, version)
        _check_served(target, RESPONSES_PATH)
        wrap = None
        if method == "DELETE" and self._index is not None:
            wrap = Forget.wrapper(self._index, rid)
        if limit.tokens_per_minute is not None:
            ticket = await self._limiter.reserve(client.id, limit, {}, len(body))
        outgoing = ById(method, rid, suffix, scope["query_string"], body)
        return target, (vid,), outgoing, ticket, wrap

    async def _read_body_in_time(
        self, receive: Receive, headers: dict[bytes, bytes], limits: Limits
    ) -> bytes:
        """`_read_body` within `limits.body_timeout_s` (408 after it), on the shared deadline
        timers (no loop timer of its own per request)."""
        t = limits.body_timeout_s
        deadline = self._deadlines.start(t, t, t)
        try:
            with deadline:
                declared = headers.get(b"content-length")
                return await _read_body(receive, declared, limits, self.pending_bodies)
        except TimeoutError:
            raise BodyTimeout(f"request body not received within {t:g} s") from None
        finally:
            deadline.stop()

    def _decide(
        self, target: Target, headers: dict[bytes, bytes], payload: dict[str, Any], ex: Exchange
    ) -> tuple[str, ...]:
        """The versions to try, in order: a pin alone, or the plan filtered by version health."""
        if target.pinned is not None:
            ex.routing_reason = "pinned"
            return (target.pinned.id,)
        model = target.model
        ctx = RequestContext(headers, payload, ex.client)
        plan = model.policy.plan(ctx, self._rng)
        ex.routing_reason = plan.reason
        ex.assigned = plan.versions[0]
        if plan.reason == "canary":  # sticky canaries count sessions as their unit of evidence
            ex.session = model.policy.session(ctx)
        ordered = model.serving(
            ex.path, attempt_order(plan.versions[0], plan.versions, model.fallback)
        )
        healthy = self._health.order(model.name, ordered, model.ejection)
        if healthy is None:
            raise Unavailable(
                f"every version of {model.name!r} is failing", code="no_healthy_version"
            )
        return healthy


def _check_served(target: Target, path: str) -> None:
    """404 unless the pinned version (or, unpinned, some version) serves `path`."""
    model, pinned = target.model, target.pinned
    if path not in (model.paths if pinned is None else pinned.urls):
        who = model.name if pinned is None else f"{model.name}@{pinned.id}"
        raise NotFound(
            f"{path} is not offered by {who!r} (its upstream.endpoints do not list it)",
            code="endpoint_not_supported",
        )


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


class PendingBodies:
    """Bytes held by request bodies still arriving in several pieces, across the process (a
    body that arrives in one piece is never counted: nothing waits while holding it)."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = 0


async def _read_body(
    receive: Receive, declared: bytes | None, limits: Limits, pending: PendingBodies
) -> bytes:
    """The whole request body, refusing more than `max_body_bytes` (declared or counted), and
    503 while unfinished bodies already hold `max_pending_body_bytes`."""
    limit = limits.max_body_bytes
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("invalid Content-Length")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected("client disconnected while sending the request")
    chunk: bytes = message.get("body", b"")
    if len(chunk) > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    if not message.get("more_body", False):
        return chunk  # the common case: the whole body in one piece
    parts, size = [chunk], len(chunk)
    pending.held += size
    try:
        while True:
            if pending.held > limits.max_pending_body_bytes:
                raise Unavailable(
                    "gateway overloaded: too many request bodies in progress",
                    code="pending_bodies_full",
                )
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected("client disconnected while sending the request")
            chunk = message.get("body", b"")
            size += len(chunk)
            pending.held += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body larger than {limit} bytes")
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)
    finally:
        pending.held -= size


def _parse(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string", param="model")
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
