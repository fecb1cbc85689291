"""Assembling the ASGI application: the data-plane endpoint, the web routes, and the lifespan.

The top-level app is a tiny dispatcher: POSTs to the three proxy paths go straight to the pure
ASGI `ProxyEndpoint`; everything else (models, health, metrics) goes to a FastAPI app, which also
publishes the OpenAPI schema (admin routes join it, or go to their own listener with
`admin.listen`). The lifespan owns the one pooled upstream client per process, the background
loops (store flush/refresh, performance recompute, config watch) and the admin listener, and moves
everything built at start-up into the garbage collector's permanent generation (`gc.freeze`)
and raises the young-generation threshold (`GC_THRESHOLDS`): together they took the collector
from ~20 % of the request path's CPU to almost nothing. `from_env` is the import-string
factory `uvicorn --workers N` calls in each worker (config path in GATEWAY_CONFIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from random import Random

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from gateway import openapi
from gateway.admin import admin_router
from gateway.admin_listener import AdminListener
from gateway.api import ProxyEndpoint
from gateway.config import GatewayConfig, load_config
from gateway.control.service import build_control
from gateway.errors import ClientError
from gateway.exchange import Exchange
from gateway.forward import Forwarder
from gateway.live import Live
from gateway.observability import Metrics
from gateway.ratelimit import LocalLimiter
from gateway.ratelimit_shared import build_limiter
from gateway.registry import PROXY_PATHS
from gateway.reload import Reloader
from gateway.resilience.health import HealthTable
from gateway.runtime import Gateway, Runtime
from gateway.shadow import Shadow
from gateway.store import SharedClock, build_sync
from gateway.store.base import ANALYSIS_TAG, SHADOW_TAG
from gateway.upstream import AiohttpTransport, Transport
from gateway.web import build_admin_web, build_web

PROXY_ROUTES = frozenset(f"/v1{p}" for p in PROXY_PATHS)
CONFIG_ENV = "GATEWAY_CONFIG"
# Young-generation threshold above what requests in flight keep alive (~100 tracked objects
# each): with the default 700, 64 requests in flight forced a collection every few requests
# (10 µs of CPU per request, measured); almost everything a request allocates is freed by
# reference counting, so collections now run only when cyclic garbage builds up.
GC_THRESHOLDS = (20_000, 20, 20)


class GatewayApp:
    """The ASGI entry point: dispatch the hot path first, the rest to FastAPI."""

    def __init__(
        self, gateway: Gateway, web: FastAPI, rng: Random, shadow: Shadow | None = None
    ) -> None:
        self.gateway = gateway
        self.web = web
        self._proxy = ProxyEndpoint(gateway, rng, self._record, shadow)

    def _record(self, ex: Exchange) -> None:
        self.gateway.live.record(ex)
        self.gateway.control.observe(ex)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Hands over the chosen app's coroutine rather than awaiting it (one frame fewer on
        every resume); servers must be told it is ASGI 3 (`uvicorn_options` does)."""
        if scope["type"] == "http" and scope["path"] in PROXY_ROUTES:
            if scope["method"] == "POST":
                return self._proxy(scope, receive, send)
            return _method_not_allowed(send)
        return self.web(scope, receive, send)


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
) -> GatewayApp:
    """Build the gateway for a validated config; the transport opens in the lifespan.

    With `config_path`, the file is watched and re-read on change, SIGHUP and admin reload.
    """
    env = os.environ if environ is None else environ
    rng = rng or Random()
    health = HealthTable(time.monotonic, Random(rng.random()))
    gateway = Gateway(Runtime.build(cfg, Metrics(), env), Forwarder(None), health)
    reloader = Reloader(gateway, config_path, environ) if config_path else None
    local_limits = LocalLimiter(time.monotonic)
    gateway.limiter = build_limiter(cfg, env, Random(rng.random()), local_limits)
    sync = build_sync(
        cfg.store, env, lambda: _series(gateway.runtime), rng=Random(rng.random()), clock=clock
    )
    gateway.live = Live(sync, lambda: gateway.runtime, Random(rng.random()))
    gateway.runtime.metrics.watch_live(sync, lambda: gateway.runtime.registry)
    gateway.control = build_control(gateway, sync, env)
    shadow = Shadow(gateway.forwarder, sync.record, Random(rng.random()))
    admin_token = env.get(cfg.admin.token_env, "") if cfg.admin.token_env else ""
    admin = _admin_listener(cfg, admin_token, gateway, reloader)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gateway.forwarder.transport = transport()
        await gateway.live.start()
        await gateway.control.start()
        tasks = [
            *_start_reload(reloader),
            asyncio.get_running_loop().create_task(gateway.access.run()),
        ]
        if admin is not None:
            await admin.start()
        gc.collect()
        gc.freeze()  # start-up objects never die: keep them out of every later collection
        gc.set_threshold(*GC_THRESHOLDS)
        gateway.ready = True
        try:
            yield
        finally:
            gateway.ready = False
            if admin is not None:
                await admin.stop()
            for task in tasks:
                task.cancel()
            await gateway.control.stop()
            await shadow.stop()
            await gateway.live.stop()
            await gateway.forwarder.close()

    web = build_web(gateway, lifespan)
    if admin_token and admin is None:
        web.include_router(admin_router(admin_token, gateway, reloader))
    openapi.install(web, lambda: sorted(gateway.runtime.registry.models))
    return GatewayApp(gateway, web, rng, shadow)


def from_env() -> GatewayApp:
    """The app for the config file named by GATEWAY_CONFIG (one per `--workers` process)."""
    from gateway.logs import configure

    path = os.environ[CONFIG_ENV]
    cfg = load_config(path)
    configure(cfg.logging.level, cfg.logging.format, cfg.logging.access)
    return create_app(cfg, config_path=path)


def _series(runtime: Runtime) -> list[tuple[str, str]]:
    """Every configured (model, version), plus the canary arms' analysis series and the shadow
    version's series."""
    out = [(m.name, v) for m in runtime.registry.models.values() for v in m.versions]
    for name, model in runtime.config.models.items():
        canary, shadow = model.routing.canary, model.routing.shadow
        if canary is not None:
            out += [(name, canary.baseline + ANALYSIS_TAG), (name, canary.candidate + ANALYSIS_TAG)]
        if shadow is not None:
            out.append((name, shadow.version + SHADOW_TAG))
    return out


def _admin_listener(
    cfg: GatewayConfig, token: str, gateway: Gateway, reloader: Reloader | None
) -> AdminListener | None:
    """With `admin.listen` (and a token) the admin routes get an app and a listener of their own."""
    if cfg.admin.listen is None or not token:
        return None
    web = build_admin_web()
    web.include_router(admin_router(token, gateway, reloader))
    return AdminListener(web, cfg.admin.listen)


def _start_reload(reloader: Reloader | None) -> list[asyncio.Task[None]]:
    if reloader is None:
        return []
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
        loop.add_signal_handler(signal.SIGHUP, reloader.reload)
    return [loop.create_task(reloader.watch())]
