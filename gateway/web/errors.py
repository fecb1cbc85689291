"""One error shape for every route the web app serves: OpenAI's error object.

`GatewayError`s render as their own body and headers; the framework's own errors (404, 405, ...)
are wrapped in the same shape, keeping their headers (such as `Allow`); request validation
errors answer 422 with `param` naming the first offending field.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.routing import Match

from gateway.errors import BadRequest, GatewayError


def install_error_handlers(web: FastAPI) -> None:
    @web.exception_handler(GatewayError)
    async def gateway_error(_: Request, err: GatewayError) -> Response:
        headers = {k.decode(): v.decode() for k, v in err.headers()}
        return Response(err.body(), err.status, headers, media_type="application/json")

    @web.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> Response:
        wrapped = GatewayError(
            str(err.detail), code="not_found" if err.status_code == 404 else None
        )
        wrapped.status, wrapped.type = err.status_code, "invalid_request_error"
        headers = dict(err.headers or {})
        if err.status_code == 405:  # every method of the path, not only its first route's
            headers["Allow"] = ", ".join(sorted(_allowed(request)))
        return Response(wrapped.body(), err.status_code, headers, media_type="application/json")

    @web.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> Response:
        first = err.errors()[0] if err.errors() else {}
        where = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(where) or None
        wrapped = BadRequest(
            f"{param or 'request'}: {first.get('msg', 'invalid')}",
            code="invalid_value",
            param=param,
        )
        return Response(wrapped.body(), 422, media_type="application/json")


def _allowed(request: Request) -> set[str]:
    """The methods of every route whose path matches the request's (Starlette's own 405 names
    only the first such route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return methods
