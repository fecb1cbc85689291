"""The composition root: builds every part of one gateway process and hands each what it uses.

`create_app` is the only place that knows how the parts fit: the current runtime, the metrics,
the pooled upstream client, version health and the attempt runner, the rate limiter, the live
store and its loops, the control plane and canary controller, shadow copies, the reloader, the
web and admin apps. Nothing is looked up later through a shared object; `Parts` keeps what was
built only so the lifespan (and tests) can reach it.

The top-level `App` is a tiny dispatcher: POSTs to the proxy paths (one set lookup) and calls on
a response id (`/v1/responses/{id}...`, one prefix test, made only when the lookup missed) go
straight to the pure ASGI `ProxyEndpoint`; everything else (models, health, metrics, admin)
goes to a FastAPI app. The lifespan owns the one pooled upstream client per process, the
background loops (store flush/refresh, performance recompute, control apply, canary controller,
config watch, access log) and the admin listener, and moves everything built at start-up into
the garbage collector's permanent generation (`gc.freeze`) and raises the young-generation
threshold (`GC_THRESHOLDS`): together they took the collector from ~20 % of the request
path's CPU to almost nothing.
`from_env` is the import-string factory `uvicorn --workers N` calls in each worker (config path
in GATEWAY_CONFIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from random import Random
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.types import Receive, Scope, Send

from gateway.config import GatewayConfig, load_config
from gateway.config.routes import ModelRegistry
from gateway.config.schema import Admin, Limits
from gateway.control.registry_writeback import RegistryWriteback
from gateway.control.service import Control, build_control
from gateway.errors import ClientError, ConfigError
from gateway.exchange import Exchange
from gateway.infra.clock import SharedClock
from gateway.infra.tasks import cancel_all
from gateway.livestats import ResponseIndex, StoreSync, build_response_index, build_sync
from gateway.livestats.base import ANALYSIS_TAG, RETRY_TAG, SHADOW_TAG
from gateway.modelregistry.poller import RegistryPoller, build_poller
from gateway.modelregistry.view import RegistryView
from gateway.observability.logs import AccessLog, configure
from gateway.observability.metrics import Metrics
from gateway.observability.tracing import RequestTracer, build_tracer
from gateway.proxy.attempts import PlanRunner
from gateway.proxy.endpoint import ProxyEndpoint
from gateway.proxy.forward import Forwarder
from gateway.proxy.responses import PREFIX as RESPONSE_ID_PREFIX
from gateway.proxy.shadow import Shadow
from gateway.proxy.upstream import AiohttpTransport, Transport
from gateway.ratelimit import FallbackReport, Limiter, LocalLimiter, build_limiter
from gateway.resilience.health import HealthTable
from gateway.routing.recompute import Recomputer
from gateway.routing.table import PROXY_PATHS
from gateway.runtime.current import Current
from gateway.runtime.reload import Reloader
from gateway.runtime.snapshot import Runtime
from gateway.server.admin_listener import AdminListener
from gateway.web import openapi
from gateway.web.admin import admin_router
from gateway.web.admin_auth import AdminAuth, FailureThrottle, Sessions
from gateway.web.public import build_admin_web, build_web

log = logging.getLogger("gateway.app")
PROXY_ROUTES = frozenset(f"/v1{p}" for p in PROXY_PATHS)
CONFIG_ENV = "GATEWAY_CONFIG"
# Young-generation threshold above what requests in flight keep alive (~100 tracked objects
# each): with the default 700, 64 requests in flight forced a collection every few requests
# (10 µs of CPU per request, measured); almost everything a request allocates is freed by
# reference counting, so collections now run only when cyclic garbage builds up.
GC_THRESHOLDS = (20_000, 20, 20)


@dataclass(frozen=True, slots=True)
class Parts:
    """What `create_app` built, for the lifespan to start and stop (and for tests to inspect)."""

    current: Current
    metrics: Metrics
    forwarder: Forwarder
    health: HealthTable
    endpoint: ProxyEndpoint
    limiter: Limiter
    sync: StoreSync
    recomputer: Recomputer
    control: Control
    shadow: Shadow
    responses: ResponseIndex
    access: AccessLog
    reloader: Reloader | None
    admin: AdminListener | None
    tracer: RequestTracer | None = None
    registry: RegistryPoller | None = None
    writeback: RegistryWriteback | None = None

    def registry_status(self) -> dict[str, Any] | None:
        """What the registry poller read and refused, and the write-backs (None: no registry)."""
        if self.registry is None:
            return None
        out = self.registry.status()
        out["writeback"] = self.writeback.status() if self.writeback else None
        return out


class App:
    """The ASGI entry point: dispatch the hot path first, the rest to FastAPI."""

    def __init__(self, parts: Parts, web: FastAPI) -> None:
        self.parts = parts
        self.current = parts.current
        self.web = web
        self._proxy = parts.endpoint

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Hands over the chosen app's coroutine rather than awaiting it (one frame fewer on
        every resume); servers must be told it is ASGI 3 (`uvicorn_options` does)."""
        if scope["type"] == "http":
            cors = self.current.runtime.cors
            if cors is not None:  # CORS on: preflights answered here, allowed origins marked
                preflight, send = cors.handle(scope, send)
                if preflight:
                    return cors.preflight(scope, send)
            if scope["path"] in PROXY_ROUTES:
                if scope["method"] == "POST":
                    return self._proxy(scope, receive, send)
                return _method_not_allowed(send)
            if scope["path"].startswith(RESPONSE_ID_PREFIX):
                return self._proxy(scope, receive, send)  # the endpoint checks the method
        return self.web(scope, receive, send)

    def end_inflight(self) -> None:
        """The drain deadline passed: end the requests still running."""
        self._proxy.end_inflight()

    def edge_limits(self) -> Limits:
        """The limits the HTTP edge enforces while parsing a request head (follow reloads)."""
        return self.current.runtime.limits


async def _method_not_allowed(send: Send) -> None:
    err = ClientError("use POST for this endpoint", code="method_not_allowed")
    err.status = 405
    body = err.body()
    headers = [
        (b"allow", b"POST"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 405, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(
    cfg: GatewayConfig,
    environ: Mapping[str, str] | None = None,
    *,
    rng: Random | None = None,
    transport: Callable[[], Transport] = AiohttpTransport,
    config_path: str | None = None,
    clock: SharedClock | None = None,
    tracer: RequestTracer | None = None,
) -> App:
    """Build the gateway for a validated config; the transport opens in the lifespan.

    With `config_path`, the file is watched and re-read on change, SIGHUP and admin reload.
    `tracer` replaces the one `tracing` would build (tests export to memory with it).
    """
    env = os.environ if environ is None else environ
    rng = rng or Random()
    tracer = tracer or build_tracer(cfg.tracing, env)
    parts = _build(cfg, env, rng, config_path, clock, tracer)
    current = parts.current
    token = env.get(cfg.admin.token_env, "") if cfg.admin.token_env else ""
    auth = _admin_auth(token, parts) if token else None
    if auth is not None and cfg.admin.listen is not None:
        admin_web = build_admin_web()
        admin_web.include_router(_admin_routes(auth, parts))
        listener = AdminListener(admin_web, cfg.admin.listen)
        parts = replace(parts, admin=listener)
    web = build_web(current, _lifespan(parts, transport), auth)
    if auth is not None and parts.admin is None:
        web.include_router(_admin_routes(auth, parts))
    openapi.install(web, lambda: sorted(current.runtime.registry.models))
    return App(parts, web)


def _build(
    cfg: GatewayConfig,
    env: Mapping[str, str],
    rng: Random,
    config_path: str | None,
    clock: SharedClock | None,
    tracer: RequestTracer | None,
) -> Parts:
    """Every part of the process, each given what it uses."""
    metrics = Metrics()
    poller = _registry_poller(cfg, env, metrics, lambda: current)
    current = Current(_first_runtime(cfg, metrics, env, poller))
    health = HealthTable(time.monotonic, Random(rng.random()))
    health.on_eject, health.on_panic = metrics.ejected, metrics.panic
    forwarder = Forwarder(None)
    sync = build_sync(
        cfg.store, env, lambda: _series(current.runtime), rng=Random(rng.random()), clock=clock
    )
    metrics.watch_live(sync, lambda: current.runtime.registry)
    control = build_control(current, sync, env, metrics.canary)
    shadow = Shadow(forwarder, sync.record, Random(rng.random()))
    responses = build_response_index(cfg.responses, cfg.store, env, time.monotonic)
    access = AccessLog(cfg.logging.access, cfg.logging.format == "json")

    def record(ex: Exchange) -> None:
        sync.record_exchange(ex)
        control.observe(ex)

    report = FallbackReport(
        metrics.ratelimit_fallback, metrics.ratelimit_breaker_open, time.monotonic
    )
    limiter = build_limiter(cfg, env, Random(rng.random()), LocalLimiter(time.monotonic), report)
    endpoint = ProxyEndpoint(
        current,
        PlanRunner(forwarder, health, metrics),
        health,
        limiter,
        access,
        rng,
        record,
        shadow,
        responses,
        tracer,
    )
    metrics.count_inflight = lambda: endpoint.inflight
    metrics.count_pending_body_bytes = lambda: endpoint.pending_bodies.held
    recomputer = Recomputer(
        lambda: current.runtime.registry,
        lambda: sync.snapshot,
        sync.clock,
        Random(rng.random()),
        metrics.publish_weights,
    )
    reloader = Reloader(current, config_path, env) if config_path else None
    writeback = None
    if poller is not None:
        writeback = RegistryWriteback(
            poller.client, control.controller, metrics.registry, poller.poll
        )
    return Parts(
        current, metrics, forwarder, health, endpoint, limiter, sync, recomputer, control, shadow,
        responses, access, reloader, None, tracer, poller, writeback,
    )  # fmt: skip


def _admin_auth(token: str, parts: Parts) -> AdminAuth:
    """One per process: the client port's admin routes, the admin listener and `/metrics`
    share its throttle."""

    def admin() -> Admin:  # read on every use: follows reloads
        return parts.current.runtime.config.admin

    sessions = Sessions(parts.control.plane.store, lambda: admin().session_ttl_s)
    throttle = FailureThrottle(lambda: admin().max_failures_per_minute, time.monotonic)
    return AdminAuth(token, sessions, throttle, parts.metrics.admin_auth_failed)


def _admin_routes(auth: AdminAuth, parts: Parts) -> APIRouter:
    return admin_router(
        auth, parts.current, parts.reloader, parts.control, parts.sync, parts.registry_status
    )


def _registry_poller(
    cfg: GatewayConfig, env: Mapping[str, str], metrics: Metrics, current: Callable[[], Current]
) -> RegistryPoller | None:
    """The model registry's poller; each view it reads is merged into a new runtime."""
    if cfg.registry is None:
        return None

    def apply(view: RegistryView) -> None:
        holder = current()
        holder.swap(holder.runtime.rebuilt(env, view=view))

    def models() -> dict[str, ModelRegistry]:
        file_models = current().runtime.file_config.models.items()
        return {name: m.registry for name, m in file_models if m.registry is not None}

    return build_poller(cfg.registry.mlflow, models, env, apply, metrics.registry)


def _first_runtime(
    cfg: GatewayConfig, metrics: Metrics, env: Mapping[str, str], poller: RegistryPoller | None
) -> Runtime:
    """The start-up runtime, with the registry view cached by an earlier process if it fits."""
    cached = poller.load_cache() if poller is not None else None
    if poller is not None and cached is not None:
        try:
            runtime = Runtime.build(cfg, metrics, env, view=cached)
        except ConfigError as err:
            log.warning("registry: cached view does not fit this config (%s)", err.message)
        else:
            poller.view = cached
            return runtime
    return Runtime.build(cfg, metrics, env)


def _lifespan(
    parts: Parts, transport: Callable[[], Transport]
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        parts.forwarder.transport = transport()
        await parts.sync.start()
        await _first_read(parts.registry)
        await parts.control.start()
        await parts.limiter.start()
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(parts.sync.run()),
            loop.create_task(parts.recomputer.run()),
            loop.create_task(parts.access.run()),
            *_start_reload(parts.reloader),
            *_start_registry(parts.registry, parts.writeback),
        ]
        if parts.admin is not None:
            await parts.admin.start()
        gc.collect()
        gc.freeze()  # start-up objects never die: keep them out of every later collection
        gc.set_threshold(*GC_THRESHOLDS)
        parts.current.ready = True
        try:
            yield
        finally:
            parts.current.ready = False
            if parts.admin is not None:
                await parts.admin.stop()
            await cancel_all(tasks)
            await parts.control.stop()
            await parts.shadow.stop()
            await parts.sync.stop()
            await parts.limiter.stop()
            await parts.responses.aclose()
            await parts.forwarder.close()
            if parts.registry is not None:
                await parts.registry.client.aclose()
            if parts.tracer is not None:
                await parts.tracer.shutdown()

    return lifespan


def from_env() -> App:
    """The app for the config file named by GATEWAY_CONFIG (one per `--workers` process)."""
    path = os.environ[CONFIG_ENV]
    cfg = load_config(path)
    configure(cfg.logging.level, cfg.logging.format, cfg.logging.access)
    return create_app(cfg, config_path=path)


def _series(runtime: Runtime) -> list[tuple[str, str]]:
    """Every configured (model, version), plus the canary arms' analysis and retry series and the
    shadow version's series."""
    out = [(m.name, v) for m in runtime.registry.models.values() for v in m.versions]
    for name, model in runtime.config.models.items():
        canary, shadow = model.routing.canary, model.routing.shadow
        if canary is not None:
            arms = canary.arms()
            out += [(name, arm + tag) for arm in arms for tag in (ANALYSIS_TAG, RETRY_TAG)]
        if shadow is not None:
            out.append((name, shadow.version + SHADOW_TAG))
    return out


async def _first_read(poller: RegistryPoller | None) -> None:
    """Read the registry once before serving (bounded: on failure the cached view serves and
    the loop retries)."""
    if poller is None:
        return
    bound = 2 * poller.settings.timeout_s
    try:
        await asyncio.wait_for(poller.poll(), bound)
    except TimeoutError:
        log.warning("registry: first read took over %.1f s; serving the cached view", bound)


def _start_registry(
    poller: RegistryPoller | None, writeback: RegistryWriteback | None
) -> list[asyncio.Task[None]]:
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(poller.run())] if poller is not None else []
    if writeback is not None:
        tasks.append(loop.create_task(writeback.run()))
    return tasks


def _start_reload(reloader: Reloader | None) -> list[asyncio.Task[None]]:
    if reloader is None:
        return []
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
        loop.add_signal_handler(signal.SIGHUP, reloader.reload)
    return [loop.create_task(reloader.watch())]
