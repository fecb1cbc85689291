"""Browser cross-origin access (CORS) for one config: `CorsPolicy`, or None when it is off.

Owns the answers to preflights and the headers added to actual responses. A preflight (`OPTIONS`
with `Origin` and `Access-Control-Request-Method`) on any path — the proxy POST paths included —
is answered here, before routing, authentication or any upstream: 204 with the allowed methods,
headers and max age when the origin is allowed, 403 in OpenAI's error shape when it is not. An
actual request from an allowed origin gets `Access-Control-Allow-Origin` (the origin itself, or
`*` when every origin is allowed), `Vary: Origin` and the gateway's response headers exposed to
scripts. No credentials mode: clients send their key in `Authorization`, never in a cookie.
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import Message, Scope, Send

from gateway.config.schema import Cors
from gateway.errors import ClientError

METHODS = b"GET, POST, DELETE, OPTIONS"
EXPOSED = (
    b"x-request-id, x-gateway-model, x-gateway-version, x-gateway-config-revision, retry-after, "
    b"x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-limit-tokens, "
    b"x-ratelimit-remaining-tokens"
)


class OriginNotAllowed(ClientError):
    status = 403
    type = "permission_error"
    code = "cors_origin_not_allowed"


class CorsPolicy:
    __slots__ = ("_any", "_origins", "_preflight")

    def __init__(self, cors: Cors) -> None:
        self._any = "*" in cors.allow_origins
        self._origins = frozenset(o.encode() for o in cors.allow_origins if o != "*")
        self._preflight = [
            (b"access-control-allow-methods", METHODS),
            (b"access-control-allow-headers", ", ".join(cors.allow_headers).encode()),
            (b"access-control-max-age", str(cors.max_age_s).encode()),
        ]

    @classmethod
    def build(cls, cors: Cors) -> CorsPolicy | None:
        """The policy of the `cors` section, or None when no origin is allowed (off)."""
        return cls(cors) if cors.allow_origins else None

    def allowed(self, origin: bytes) -> bytes | None:
        """The `Access-Control-Allow-Origin` value for `origin`, or None if it is not allowed."""
        if self._any:
            return b"*"
        return origin if origin in self._origins else None

    def handle(self, scope: Scope, send: Send) -> tuple[bool, Send]:
        """(True, _) when this is a preflight that `preflight` must answer; else (False, the
        `send` to use: one that adds the CORS headers when the request's origin is allowed)."""
        origin = preflight = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = value
        if origin is None:
            return False, send
        if scope["method"] == "OPTIONS" and preflight is not None:
            return True, send
        allow = self.allowed(origin)
        return False, send if allow is None else _adding(send, _actual(allow))

    async def preflight(self, scope: Scope, send: Send) -> None:
        origin = next((v for k, v in scope["headers"] if k == b"origin"), b"")
        allow = self.allowed(origin)
        if allow is None:
            body = OriginNotAllowed(f"origin {origin.decode('latin-1')!r} is not allowed").body()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"vary", b"origin"),
            ]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        headers = [*_actual(allow), *self._preflight, (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _actual(allow: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", allow),
        (b"access-control-expose-headers", EXPOSED),
        (b"vary", b"origin"),
    ]


def _adding(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    def wrapped(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        return send(message)

    return wrapped
