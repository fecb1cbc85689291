"""The web routes beside the data plane: model listing, health, readiness, metrics, the API
reference page (`/docs`, reading the OpenAPI document), and the status page's public login form
(when an admin token is configured) — or, with `admin.listen`, the separate admin listener's
app, which then holds the login form and the admin routes.

A FastAPI app (it also publishes the OpenAPI document); errors are rendered by `web.errors`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from gateway.auth import Client
from gateway.runtime.current import Current
from gateway.web import ui
from gateway.web.admin_auth import AdminAuth
from gateway.web.errors import install_error_handlers
from gateway.web.metrics import metrics_guard, metrics_response
from gateway.web.openapi import ERROR

ERR = {"content": {"application/json": {"schema": ERROR}}}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key", **ERR},
    403: {"description": "The key may not use this model or pin", **ERR},
}
METRICS_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "`metrics.require` asks for a key or the admin token", **ERR},
    403: {"description": "The key is not in `metrics.key_ids`", **ERR},
    429: {"description": "Too many wrong admin tokens from this address", **ERR},
}


def build_web(current: Current, lifespan: Any, admin_auth: AdminAuth | None = None) -> FastAPI:
    web = FastAPI(
        title="LLM version gateway",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,  # a redirect would build its Location from the client's Host
    )
    install_error_handlers(web)

    def caller(request: Request) -> Client:
        auth = request.headers.get("authorization")
        return current.runtime.keys.authenticate(auth.encode("latin-1") if auth else None)

    @web.get(
        "/v1/models",
        summary="List models with their versions, aliases and metadata",
        responses=AUTH_ERRORS,
    )
    async def list_models(request: Request) -> JSONResponse:
        return JSONResponse(current.runtime.registry.describe(caller(request).may_use))

    @web.get(
        "/v1/models/{model_id:path}",
        summary="One model (`chat`) or one version (`chat@v1`)",
        responses={**AUTH_ERRORS, 404: {"description": "Unknown model or version", **ERR}},
    )
    async def get_model(model_id: str, request: Request) -> JSONResponse:
        client = caller(request)
        name, sep, ref = model_id.partition("@")
        model = current.runtime.registry.model(name, client.may_use)
        client.check(model.name, bool(sep))
        if not sep:
            return JSONResponse(model.describe())
        version = model.version(ref)
        return JSONResponse(version.describe(model.aliases_of(version.id)))

    @web.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @web.get(
        "/readyz",
        summary="Readiness: config loaded, able to route, not draining",
        responses={503: {"description": "Not ready (starting or draining)"}},
    )
    async def readyz() -> JSONResponse:
        ready = current.serving
        status = "draining" if current.draining else "ready" if ready else "not ready"
        body = {"status": status, "revision": current.runtime.revision}
        return JSONResponse(body, status_code=200 if ready else 503)

    @web.get(
        "/metrics",
        summary="Prometheus metrics (`metrics.require` may ask for a key or the admin token)",
        response_class=PlainTextResponse,
        dependencies=[Depends(metrics_guard(current, admin_auth))],
        responses=METRICS_ERRORS,
    )
    async def metrics() -> Response:
        return metrics_response(current)

    _docs_route(web)
    admin = current.runtime.config.admin
    if admin.token_env and admin.listen is None:
        _login_routes(web)
    return web


def build_admin_web() -> FastAPI:
    """The app of the separate admin listener (`admin.listen`): the admin router is added by the
    caller; the data plane, models and metrics are not served here."""
    web = FastAPI(
        title="LLM version gateway admin",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url="/admin/openapi.json",
        redirect_slashes=False,
    )
    install_error_handlers(web)
    _docs_route(web)
    _login_routes(web)
    return web


def _docs_route(web: FastAPI) -> None:
    """`/docs`: the OpenAPI document as a page; self-contained (no CDN, no external asset)."""

    @web.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return ui.page("docs.html")


def _login_routes(web: FastAPI) -> None:
    """The status page's public login form (it knows no secret: `/admin/session` checks)."""

    @web.get("/login", include_in_schema=False)
    async def login() -> Response:
        return ui.page("login.html")

    @web.get("/logout", include_in_schema=False)
    async def logout() -> Response:
        """The session cookie is scoped to /admin: sign-out happens there."""
        return RedirectResponse("/admin/logout", status_code=303)
