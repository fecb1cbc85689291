"""`GET /metrics`: the Prometheus text, and who may read it on the client port.

`metrics.require` decides: `none` (anyone who reaches the port; the compatible default), `key`
(`Authorization: Bearer <client key>` of a key listed in `metrics.key_ids`; other keys get 403,
so a tenant's key cannot list models and versions hidden from it), or `admin` (the admin token,
checked and throttled like every admin authentication; no session cookie). The admin surface
always serves the same text at `GET /admin/metrics`, behind the admin token — on the separate
admin listener that is the recommended scrape target (docs/security.md). The setting is read on
every scrape, so a reload applies at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import Response

from gateway.auth import Forbidden
from gateway.runtime.current import Current
from gateway.web.admin_auth import AdminAuth, Unauthorized

MEDIA_TYPE = "text/plain; version=0.0.4"


def metrics_response(current: Current) -> Response:
    return Response(current.runtime.metrics.scrape(), media_type=MEDIA_TYPE)


def metrics_guard(current: Current, auth: AdminAuth | None) -> Callable[[Request], Awaitable[None]]:
    """The client port's `/metrics` dependency."""

    async def check(request: Request) -> None:
        rt = current.runtime
        access = rt.config.metrics
        if access.require == "none":
            return
        if access.require == "admin":
            if auth is None:  # the token's variable is empty: nobody can read it here
                raise Unauthorized("metrics on this port need the admin token")
            await auth.admit(request, sessions=False)
            return
        header = request.headers.get("authorization")
        client = rt.keys.authenticate(header.encode("latin-1", "replace") if header else None)
        if client.id not in access.key_ids:
            raise Forbidden("this API key may not read metrics", code="metrics_not_allowed")

    return check
