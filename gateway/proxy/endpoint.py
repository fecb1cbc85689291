"""The OpenAI-compatible data plane: the model endpoints (`POST /v1/chat/completions`,
`/v1/completions`, `/v1/embeddings`, `/v1/responses`, `/v1/images/generations`,
`/v1/audio/speech`, `/v1/audio/transcriptions`, `/v1/moderations`, `/v1/rerank`) and the calls on
a response id (`/v1/responses/{id}[/cancel|/input_items]`, see `proxy/responses.py`).

A pure ASGI endpoint (no framework on the hot path). Per request: admit (global in-flight cap) →
read the body once under the size limit → parse → resolve model/alias/pin → decide (the policy's
plan, the fallback order, version health) → do (`PlanRunner`: attempts, retries) → record. A
client disconnect cancels the upstream call (through the edge's per-connection hook, or a watcher
on `receive` under other servers); the drain deadline cancels the same way and ends a started
stream with a `server_shutdown` error event. Reading the body is `body.py`; the client side of a
request, and the answers the endpoint gives it itself, `client.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from random import Random
from time import perf_counter
from typing import Any

from starlette.types import Receive, Scope, Send

from gateway.auth import Client
from gateway.config.schema import Limits
from gateway.errors import (
    BadRequest,
    BodyTimeout,
    GatewayError,
    KeyOverloaded,
    MethodNotAllowed,
    NotFound,
    StoreError,
    Unavailable,
)
from gateway.exchange import Exchange
from gateway.infra.tasks import CurrentTask
from gateway.livestats.responses import Owner, ResponseIndex
from gateway.observability.logs import AccessLog
from gateway.observability.tracing import RequestTracer
from gateway.proxy.attempts import PlanRunner, attempt_order
from gateway.proxy.body import PendingBodies, parse, read_body, request_id
from gateway.proxy.client import ClientLink, cancelled, fail
from gateway.proxy.edge import DISCONNECT
from gateway.proxy.forward import Outgoing
from gateway.proxy.multipart import Upload, read_upload
from gateway.proxy.responses import ROUTES, ById, Capture, Forget, split_path
from gateway.proxy.shadow import Shadow
from gateway.proxy.usage import ask_for_usage, estimate_usage
from gateway.ratelimit import Limiter
from gateway.ratelimit.gcra import Ticket, output_cap
from gateway.ratelimit.openended import OpenEnded
from gateway.resilience.health import HealthTable
from gateway.routing import RequestContext
from gateway.routing.table import PROXY_PATHS, RESPONSES_PATH, Target
from gateway.runtime.current import Current
from gateway.runtime.snapshot import Runtime

MODEL_ROUTES = frozenset(f"/v1{p}" for p in PROXY_PATHS)
USAGE_OPTION_ROUTES = frozenset(("/v1/chat/completions", "/v1/completions"))
UPLOAD_ROUTES = frozenset(("/v1/audio/transcriptions",))  # multipart, streamed through
# answers of any size unless the request caps them (`gateway.ratelimit.openended`)
OPEN_ENDED_ROUTES = frozenset(("/v1/chat/completions", "/v1/completions", RESPONSES_PATH))
Admitted = tuple[
    Target, tuple[str, ...], dict[str, Any] | Outgoing, Ticket | None, Callable[[Send], Send] | None
]


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
        ex = Exchange(request_id(headers.get(b"x-request-id")), scope["path"], perf_counter())
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
            await cancelled(link, ex, rt)
        except GatewayError as err:
            # an upload whose client side broke is the client's failure, not the upstream's
            broken = payload.failure if type(payload) is Upload else None
            await fail(link, broken or err, ex, rt)
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
            payload = parse(body)
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
        target.check_served(path)
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
        target.check_served(RESPONSES_PATH)
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
        """`read_body` within `limits.body_timeout_s` (408 after it), on the shared deadline
        timers (no loop timer of its own per request)."""
        t = limits.body_timeout_s
        deadline = self._deadlines.start(t, t, t)
        try:
            with deadline:
                declared = headers.get(b"content-length")
                return await read_body(receive, declared, limits, self.pending_bodies)
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
