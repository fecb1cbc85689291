"""The admin API under /admin: its own bearer token, never open by default.

Owns the admin token check (constant-time compare; missing, wrong and malformed tokens are all a
plain 401 that never echoes what was sent) and the admin router. With no `admin.token_env`
configured (or the variable empty) the admin API is not mounted at all. Every admin route is
registered on `router`, whose dependency enforces the token, so no route can skip it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gateway.control.service import Control
from gateway.errors import GatewayError
from gateway.livestats import StoreSync
from gateway.livestats.sync import ANONYMOUS
from gateway.runtime.current import Current
from gateway.runtime.reload import Reloader
from gateway.web import ui
from gateway.web.control_routes import add_control_routes
from gateway.web.openapi import ERROR
from gateway.web.stats import version_stats

ERR = {"content": {"application/json": {"schema": ERROR}}}


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_admin_token"
    outcome = "client_error"


def _no_usage() -> dict[str, object]:
    return {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "outcomes": {}}


def admin_guard(token: str) -> Callable[[Request], None]:
    """A FastAPI dependency that admits only `Authorization: Bearer <token>`.

    Without an Authorization header, reads (GET/HEAD) may instead present the status page's
    session cookie (see `gateway.ui`); writes always need the header.
    """
    expected = f"Bearer {token}".encode()

    def check(request: Request) -> None:
        if ui.session_admits(request, token):
            return
        given = request.headers.get("authorization", "").encode("latin-1", "replace")
        if not hmac.compare_digest(given, expected):
            raise Unauthorized("admin token missing or invalid")

    return check


def admin_router(
    token: str, current: Current, reloader: Reloader | None, control: Control, sync: StoreSync
) -> APIRouter:
    """All admin routes, behind the token guard."""
    router = APIRouter(prefix="/admin", dependencies=[Depends(admin_guard(token))], tags=["admin"])

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
                        "code": "no_config_file",
                    }
                },
                status_code=409,
            )
        result = reloader.reload()
        if not result.ok:
            return JSONResponse(
                {"revision": result.revision, "problems": list(result.problems)}, status_code=422
            )
        return JSONResponse({"revision": result.revision, "notes": list(result.notes)})

    @router.get(
        "/models/{model}/stats",
        summary="Live per-version numbers over the stats window and the routing weight now",
        responses={404: {"description": "Unknown model", **ERR}},
    )
    async def model_stats(model: str) -> JSONResponse:
        return JSONResponse(version_stats(current.runtime, sync, model))

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
        ui.set_session(response, token, secure=request.url.scheme == "https")
        return response

    add_control_routes(router, current, control)
    return router
