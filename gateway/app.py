"""Assembling the ASGI application: the data-plane endpoint, the web routes, and the lifespan.

The top-level app is a tiny dispatcher: POSTs to the three proxy paths go straight to the pure
ASGI `ProxyEndpoint`; everything else (models, health, metrics) goes to a FastAPI app, which also
publishes the OpenAPI schema. The lifespan owns the one pooled upstream client per process and
the live state's background loops (store flush/refresh, performance recompute). `from_env` is the
import-string factory `uvicorn --workers N` calls in each worker (config path in GATEWAY_CONFIG).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from random import Random
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from gateway.admin import admin_router
from gateway.api import ProxyEndpoint
from gateway.config import GatewayConfig, load_config
from gateway.errors import GatewayError
from gateway.forward import Forwarder
from gateway.live import Live
from gateway.observability import Metrics
from gateway.registry import PROXY_PATHS
from gateway.runtime import Runtime
from gateway.store import SharedClock, build_sync
from gateway.upstream import AiohttpTransport, Transport

PROXY_ROUTES = frozenset(f"/v1{p}" for p in PROXY_PATHS)


CONFIG_ENV = "GATEWAY_CONFIG"


class Gateway:
    """Process-wide state: the current config snapshot, the upstream forwarder, live state."""

    def __init__(self, runtime: Runtime, forwarder: Forwarder) -> None:
        self.runtime = runtime
        self.forwarder = forwarder
        self.ready = False
        self.live: Live

    def swap(self, runtime: Runtime) -> None:
        runtime.metrics.use_registry(runtime.registry)
        self.runtime = runtime


class GatewayApp:
    """The ASGI entry point: dispatch the hot path first, the rest to FastAPI."""

    def __init__(self, gateway: Gateway, web: FastAPI, rng: Random) -> None:
        self.gateway = gateway
        self.web = web
        self._proxy = ProxyEndpoint(
            lambda: gateway.runtime, gateway.forwarder, rng, gateway.live.record
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in PROXY_ROUTES:
            await self._proxy(scope, receive, send)
        else:
            await self.web(scope, receive, send)


def create_app(
    cfg: GatewayConfig,
    environ: Mapping[str, str] | None = None,
    *,
    rng: Random | None = None,
    transport: Callable[[], Transport] = AiohttpTransport,
    clock: SharedClock | None = None,
) -> GatewayApp:
    """Build the gateway for a validated config; the transport opens in the lifespan."""
    env = os.environ if environ is None else environ
    rng = rng or Random()
    gateway = Gateway(Runtime.build(cfg, Metrics(), env), Forwarder(None))
    gateway.swap(gateway.runtime)
    sync = build_sync(
        cfg.store, env, lambda: _series(gateway.runtime), rng=Random(rng.random()), clock=clock
    )
    gateway.live = Live(sync, lambda: gateway.runtime, Random(rng.random()))
    gateway.runtime.metrics.watch_live(sync, lambda: gateway.runtime.registry)
    admin_token = env.get(cfg.admin.token_env, "") if cfg.admin.token_env else ""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gateway.forwarder.transport = transport()
        await gateway.live.start()
        gateway.ready = True
        try:
            yield
        finally:
            gateway.ready = False
            await gateway.live.stop()
            await gateway.forwarder.close()

    web = _web(gateway, lifespan)
    if admin_token:
        web.include_router(admin_router(admin_token, gateway))
    return GatewayApp(gateway, web, rng)


def from_env() -> GatewayApp:
    """The app for the config file named by GATEWAY_CONFIG (one per `--workers` process)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return create_app(load_config(os.environ[CONFIG_ENV]))


def _series(runtime: Runtime) -> list[tuple[str, str]]:
    return [(m.name, v) for m in runtime.registry.models.values() for v in m.versions]


def _web(gateway: Gateway, lifespan: Any) -> FastAPI:
    web = FastAPI(
        title="LLM version gateway", version="1", lifespan=lifespan, docs_url=None, redoc_url=None
    )

    @web.exception_handler(GatewayError)
    async def gateway_error(_: Request, err: GatewayError) -> Response:
        return Response(err.body(), status_code=err.status, media_type="application/json")

    @web.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> Response:
        wrapped = GatewayError(
            str(err.detail), code="not_found" if err.status_code == 404 else None
        )
        wrapped.status, wrapped.type = err.status_code, "invalid_request_error"
        return Response(wrapped.body(), status_code=err.status_code, media_type="application/json")

    @web.get("/v1/models", summary="List models with their versions, aliases and metadata")
    async def list_models() -> JSONResponse:
        return JSONResponse(gateway.runtime.registry.describe())

    @web.get("/v1/models/{model_id:path}", summary="One model (`chat`) or one version (`chat@v1`)")
    async def get_model(model_id: str) -> JSONResponse:
        name, sep, ref = model_id.partition("@")
        model = gateway.runtime.registry.model(name)
        if not sep:
            return JSONResponse(model.describe())
        version = model.version(ref)
        return JSONResponse(version.describe(model.aliases_of(version.id)))

    @web.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @web.get("/readyz", summary="Readiness: config loaded and able to route")
    async def readyz() -> JSONResponse:
        ready = gateway.ready and bool(gateway.runtime.registry.models)
        body = {"status": "ready" if ready else "not ready", "revision": gateway.runtime.revision}
        return JSONResponse(body, status_code=200 if ready else 503)

    @web.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(gateway.runtime.metrics.scrape(), media_type="text/plain; version=0.0.4")

    return web
