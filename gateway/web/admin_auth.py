"""Who may use the admin surface: the bearer token, status-page sessions, and the throttle on
wrong tokens.

- **Token**: `Authorization: Bearer <admin token>`, compared in constant time; missing, wrong and
  malformed tokens are all a plain 401 that never echoes what was sent.
- **Sessions** (`Sessions`): browsers cannot attach a bearer token to a navigation, so
  `POST /admin/session` (itself behind the token) starts a session: 32 random bytes, nothing
  derived from the token, sent as an `HttpOnly; SameSite=Strict; Path=/admin` cookie (`Secure`
  over https, or always with `admin.secure_cookie: always`). The control store keeps only the
  SHA-256 of the id, with its expiry (`admin.session_ttl_s`), so every worker and replica sharing
  Redis knows it; sign-out deletes it. A session admits reads (GET/HEAD) only.
- **Throttle** (`FailureThrottle`): wrong or malformed tokens are counted per source address in
  one-minute windows; after `admin.max_failures_per_minute`, every admin authentication from that
  address is refused with 429 and `Retry-After` until its window ends — the right token too, so
  a guess cannot be confirmed. Each wrong token is logged (`admin_auth_failed`: address and
  route, never what was sent) until the limit, which is logged once (`admin_auth_throttled`);
  both are counted in `gateway_admin_auth_failures_total{result}`. Requests that present no
  token are a plain 401 and not counted (nothing was guessed), nor are stale session cookies (a
  status page left open after sign-out keeps polling; a random 256-bit id cannot be guessed).
  The table holds at most `MAX_ADDRESSES` addresses (least recently failed dropped first).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import Response

from gateway.control.store import ControlStore
from gateway.errors import GatewayError

COOKIE = "gw_admin"
SAFE_METHODS = frozenset({"GET", "HEAD"})
WINDOW_S = 60.0
MAX_ADDRESSES = 10_000
MAX_SESSION_ID = 64  # characters; longer cookies are not looked up
log = logging.getLogger("gateway.admin")


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_admin_token"
    outcome = "client_error"


class Throttled(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "too_many_admin_auth_failures"
    outcome = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            "too many failed admin authentications from this address; "
            f"retry in {math.ceil(retry_after)}s"
        )
        self.retry_after = max(1, math.ceil(retry_after))

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(self.retry_after).encode())]


class FailureThrottle:
    """Failed attempts per source address in fixed one-minute windows, in a bounded table."""

    def __init__(self, limit: Callable[[], int], clock: Callable[[], float]) -> None:
        self._limit = limit  # read on every check, so a reload applies at once
        self._clock = clock
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()  # addr → window, n

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try again (0: it may now)."""
        entry = self._failures.get(address)
        if entry is None:
            return 0.0
        started, count = entry
        left = started + WINDOW_S - self._clock()
        if left <= 0:
            del self._failures[address]
            return 0.0
        return left if count >= self._limit() else 0.0

    def failed(self, address: str) -> bool:
        """Count one failure; True when it is the one that reaches the limit."""
        now = self._clock()
        started, count = self._failures.pop(address, (now, 0))
        if now - started >= WINDOW_S:
            started, count = now, 0
        self._failures[address] = (started, count + 1)
        while len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)
        return count + 1 == self._limit()


class Sessions:
    """Status-page sessions: random ids, kept (as digests) in the control store until expiry."""

    def __init__(self, store: ControlStore, ttl_s: Callable[[], int]) -> None:
        self._store = store
        self._ttl_s = ttl_s

    async def start(self) -> str:
        sid = secrets.token_urlsafe(32)
        await self._store.put_session(_digest(sid), self._ttl_s())
        return sid

    async def valid(self, sid: str | None) -> bool:
        if not sid or len(sid) > MAX_SESSION_ID:
            return False
        return await self._store.has_session(_digest(sid))

    async def end(self, sid: str | None) -> None:
        if sid and len(sid) <= MAX_SESSION_ID:
            await self._store.drop_session(_digest(sid))

    def cookie(self, response: Response, sid: str, secure: bool) -> None:
        response.set_cookie(
            COOKIE,
            sid,
            max_age=self._ttl_s(),
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=secure,
        )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict")


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8", "replace")).hexdigest()


class AdminAuth:
    """The admin token check with its throttle, and the sessions: one per process, shared by
    the client port's admin routes, the admin listener and `/metrics` (`require: admin`)."""

    def __init__(
        self,
        token: str,
        sessions: Sessions,
        throttle: FailureThrottle,
        on_failure: Callable[[str], None],
    ) -> None:
        self._expected = f"Bearer {token}".encode()
        self.sessions = sessions
        self._throttle = throttle
        self._on_failure = on_failure

    async def admit(self, request: Request, *, sessions: bool = True) -> None:
        """Return if the request carries the admin token (or, for a read, a live session);
        raise 429 for a throttled address, else 401."""
        address = request.client.host if request.client else "unknown"
        wait = self._throttle.retry_after(address)
        if wait > 0:
            self._on_failure("throttled")
            raise Throttled(wait)
        given = request.headers.get("authorization")
        if given is None:
            cookie = request.cookies.get(COOKIE)
            if sessions and request.method in SAFE_METHODS and await self.sessions.valid(cookie):
                return
            raise Unauthorized("admin token missing or invalid")
        if hmac.compare_digest(given.encode("latin-1", "replace"), self._expected):
            return
        self._failed(address, request.url.path)
        raise Unauthorized("admin token missing or invalid")

    def _failed(self, address: str, route: str) -> None:
        self._on_failure("rejected")
        reached = self._throttle.failed(address)
        _warn("admin_auth_failed", "wrong admin token", source=address, route=route)
        if reached:
            _warn(
                "admin_auth_throttled",
                "admin authentication from this address refused for the rest of the minute",
                source=address,
                route=route,
            )

    def guard(self) -> Callable[[Request], Awaitable[None]]:
        """The admin router's dependency (reads may use a session)."""

        async def check(request: Request) -> None:
            await self.admit(request)

        return check


def _warn(name: str, message: str, **fields: object) -> None:
    log.warning(message, extra={"fields": {"event": name, **fields}})
