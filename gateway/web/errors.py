"""One error shape for every route the web app serves: OpenAI's error object.

`GatewayError`s render as their own body and headers; the framework's own errors (404, 405, ...)
are wrapped in the same shape, keeping their headers (such as `Allow`).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from gateway.errors import GatewayError


def install_error_handlers(web: FastAPI) -> None:
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
        return Response(wrapped.body(), err.status_code, err.headers, media_type="application/json")
