"""The admin API under /admin: its own bearer token, never open by default.

Owns the admin router. With no `admin.token_env` configured (or the variable empty) the admin
API is not mounted at all. Every admin route is registered on `router`, whose dependency
(`admin_auth.AdminAuth`: the token, sessions for reads, the throttle on wrong tokens) guards it,
so no route can skip it; only `/admin/logout` sits beside it (it needs nothing: it ends the
session its cookie names, if any). `GET /admin/metrics` serves the Prometheus text on the admin
surface, so it can be scraped on the admin listener with the admin token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)

from gateway.control.service import Control
from gateway.errors import ConfigError
from gateway.livestats import StoreSync
from gateway.livestats.sync import ANONYMOUS
from gateway.runtime.current import Current
from gateway.runtime.reload import Reloader
from gateway.web import ui
from gateway.web.admin_auth import COOKIE, AdminAuth, clear_cookie
from gateway.web.control_routes import add_control_routes
from gateway.web.metrics import metrics_response
from gateway.web.openapi import ERROR
from gateway.web.stats import version_stats

ERR = {"content": {"application/json": {"schema": ERROR}}}


def _no_usage() -> dict[str, object]:
    return {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "outcomes": {}}


def admin_router(
    auth: AdminAuth,
    current: Current,
    reloader: Reloader | None,
    control: Control,
    sync: StoreSync,
    registry: Callable[[], dict[str, Any] | None] = lambda: None,
) -> APIRouter:
    """All admin routes behind the token guard, and the sign-out beside them."""
    router = APIRouter(prefix="/admin", dependencies=[Depends(auth.guard())], tags=["admin"])

    @router.get("/models", summary="Models with versions, metadata, aliases and current weights")
    async def models() -> JSONResponse:
        return JSONResponse(current.runtime.registry.describe())

    @router.post("/reload", summary="Re-read the config file: 200 with the new revision, or 422")
    async def reload() -> JSONResponse:
        if reloader is None:
            return JSONResponse(
                {
                    "error": {
                        "message": "no config file to reload",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "no_config_file",
                    }
                },
                status_code=409,
            )
        result = reloader.reload()
        if not result.ok:
            rejected = ConfigError(list(result.problems))
            return JSONResponse(  # the error object, and the problems one by one for tools
                {
                    "error": rejected.fields(),
                    "revision": result.revision,
                    "problems": list(result.problems),
                },
                status_code=422,
            )
        return JSONResponse({"revision": result.revision, "notes": list(result.notes)})

    @router.get(
        "/models/{model}/stats",
        summary="Live per-version numbers over the stats window and the routing weight now",
        responses={404: {"description": "Unknown model", **ERR}},
    )
    async def model_stats(model: str) -> JSONResponse:
        stats = version_stats(current.runtime, sync, model)
        stats["registry"] = registry()
        return JSONResponse(stats)

    @router.get(
        "/registry",
        summary="The model registry: what was read and when, refused versions and why, "
        "write-backs pending",
        responses={404: {"description": "No registry configured", **ERR}},
    )
    async def registry_status() -> JSONResponse:
        status = registry()
        if status is None:
            return JSONResponse(
                {
                    "error": {
                        "message": "no model registry is configured (registry.mlflow)",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "no_registry",
                    }
                },
                status_code=404,
            )
        return JSONResponse(status)

    @router.get(
        "/keys/usage",
        summary="Requests, outcomes and tokens per client key id over the live window",
    )
    async def keys_usage() -> JSONResponse:
        ids = current.runtime.keys.ids
        source, usage = await sync.key_usage(ids)
        keys = {key: usage.get(key) or _no_usage() for key in (*ids, ANONYMOUS)}
        window_s = current.runtime.config.store.window_s
        return JSONResponse({"window_s": window_s, "source": source, "keys": keys})

    @router.get(
        "/ui",
        summary="The status page: live per-version charts, metadata and canary (HTML, read-only)",
        response_class=HTMLResponse,
    )
    async def status_page() -> HTMLResponse:
        return ui.page("status.html")

    @router.post(
        "/session",
        status_code=204,
        summary="Start a status-page session: sets an HttpOnly cookie good for admin reads",
        response_class=Response,
    )
    async def session(request: Request) -> Response:
        response = Response(status_code=204)
        always = current.runtime.config.admin.secure_cookie == "always"
        secure = always or request.url.scheme == "https"
        auth.sessions.cookie(response, await auth.sessions.start(), secure)
        return response

    @router.get(
        "/metrics",
        summary="Prometheus metrics (the recommended scrape target)",
        response_class=PlainTextResponse,
    )
    async def admin_metrics() -> Response:
        return metrics_response(current)

    add_control_routes(router, current, control)
    outer = APIRouter()
    outer.include_router(router)
    _logout_route(outer, auth)
    return outer


def _logout_route(router: APIRouter, auth: AdminAuth) -> None:
    @router.get(
        "/admin/logout",
        status_code=303,
        summary="End the status-page session (revoked everywhere) and go to the sign-in form",
        tags=["admin"],
        response_class=RedirectResponse,
    )
    async def logout(request: Request) -> Response:
        await auth.sessions.end(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        clear_cookie(response)
        return response
