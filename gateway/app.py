"""Assembling the ASGI application: the data-plane endpoint, the web routes, and the lifespan.

The top-level app is a tiny dispatcher: POSTs to the three proxy paths go straight to the pure
ASGI `ProxyEndpoint`; everything else (models, health, metrics) goes to a FastAPI app, which also
publishes the OpenAPI schema. The lifespan owns the one pooled upstream client per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
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
from gateway.auth import Client
from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.forward import Forwarder
from gateway.observability import Metrics
from gateway.registry import PROXY_PATHS
from gateway.reload import Reloader
from gateway.resilience.health import HealthTable
from gateway.runtime import Gateway, Runtime
from gateway.upstream import AiohttpTransport, Transport

PROXY_ROUTES = frozenset(f"/v1{p}" for p in PROXY_PATHS)


class GatewayApp:
    """The ASGI entry point: dispatch the hot path first, the rest to FastAPI."""

    def __init__(self, gateway: Gateway, web: FastAPI, rng: Random) -> None:
        self.gateway = gateway
        self.web = web
        self._proxy = ProxyEndpoint(gateway, rng)

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
    config_path: str | None = None,
) -> GatewayApp:
    """Build the gateway for a validated config; the transport opens in the lifespan.

    With `config_path`, the file is watched and re-read on change, SIGHUP and admin reload.
    """
    env = os.environ if environ is None else environ
    rng = rng or Random()
    health = HealthTable(time.monotonic, Random(rng.random()))
    gateway = Gateway(Runtime.build(cfg, Metrics(), env), Forwarder(None), health)
    reloader = Reloader(gateway, config_path, environ) if config_path else None
    admin_token = env.get(cfg.admin.token_env, "") if cfg.admin.token_env else ""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gateway.forwarder.transport = transport()
        tasks = _start_reload(reloader)
        gateway.ready = True
        try:
            yield
        finally:
            gateway.ready = False
            for task in tasks:
                task.cancel()
            await gateway.forwarder.close()

    web = _web(gateway, lifespan)
    if admin_token:
        web.include_router(admin_router(admin_token, gateway, reloader))
    return GatewayApp(gateway, web, rng)


def _start_reload(reloader: Reloader | None) -> list[asyncio.Task[None]]:
    if reloader is None:
        return []
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
        loop.add_signal_handler(signal.SIGHUP, reloader.reload)
    return [loop.create_task(reloader.watch())]


def _web(gateway: Gateway, lifespan: Any) -> FastAPI:
    web = FastAPI(
        title="LLM version gateway", version="1", lifespan=lifespan, docs_url=None, redoc_url=None
    )

    @web.exception_handler(GatewayError)
    async def gateway_error(_: Request, err: GatewayError) -> Response:
        headers = {k.decode(): v.decode() for k, v in err.headers()}
        return Response(err.body(), err.status, headers, media_type="application/json")

    @web.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> Response:
        wrapped = GatewayError(
            str(err.detail), code="not_found" if err.status_code == 404 else None
        )
        wrapped.status, wrapped.type = err.status_code, "invalid_request_error"
        return Response(wrapped.body(), status_code=err.status_code, media_type="application/json")

    def caller(request: Request) -> Client:
        auth = request.headers.get("authorization")
        return gateway.runtime.keys.authenticate(auth.encode("latin-1") if auth else None)

    @web.get("/v1/models", summary="List models with their versions, aliases and metadata")
    async def list_models(request: Request) -> JSONResponse:
        return JSONResponse(gateway.runtime.registry.describe(caller(request).may_use))

    @web.get("/v1/models/{model_id:path}", summary="One model (`chat`) or one version (`chat@v1`)")
    async def get_model(model_id: str, request: Request) -> JSONResponse:
        client = caller(request)
        name, sep, ref = model_id.partition("@")
        model = gateway.runtime.registry.model(name, client.may_use)
        client.check(model.name, bool(sep))
        if not sep:
            return JSONResponse(model.describe())
        version = model.version(ref)
        return JSONResponse(version.describe(model.aliases_of(version.id)))

    @web.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @web.get("/readyz", summary="Readiness: config loaded, able to route, not draining")
    async def readyz() -> JSONResponse:
        ready = gateway.ready and not gateway.draining and bool(gateway.runtime.registry.models)
        status = "draining" if gateway.draining else "ready" if ready else "not ready"
        body = {"status": status, "revision": gateway.runtime.revision}
        return JSONResponse(body, status_code=200 if ready else 503)

    @web.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(gateway.runtime.metrics.scrape(), media_type="text/plain; version=0.0.4")

    return web
