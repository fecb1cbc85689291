"""The operator status page: a read-only HTML view of the admin API, and its browser session.

Owns the static pages shipped as package data (`status.html`, served at `GET /admin/ui` on the
guarded admin router; `login.html`, the public form at `GET /login`; `docs.html`, the API
reference at `GET /docs`, which renders the OpenAPI document in the browser with no CDN), their
security headers (a Content-Security-Policy that admits only the page's own inline script by
hash, no framing, no caching), and the browser session cookie. Browsers cannot attach a bearer
token to a navigation, so `POST /admin/session` (itself behind the bearer token) sets an
`HttpOnly; SameSite=Strict; Path=/admin` cookie that the admin guard accepts for reads
(GET/HEAD) only. The cookie holds an HMAC derived from the admin token, never the token itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from functools import cache
from importlib.resources import files

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

COOKIE = "gw_admin"
COOKIE_MAX_AGE_S = 8 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD"})
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
_COOKIE_LABEL = b"llm-version-gateway admin ui session v1"


def session_value(token: str) -> str:
    """The cookie value for `token`: a keyed digest, so the browser never stores the token."""
    return hmac.new(token.encode(), _COOKIE_LABEL, hashlib.sha256).hexdigest()


def cookie_matches(cookie: str | None, token: str) -> bool:
    """Constant-time check of a session cookie against the admin token."""
    if not cookie:
        return False
    given = cookie.encode("utf-8", "replace")
    return hmac.compare_digest(given, session_value(token).encode())


def session_admits(request: Request, token: str) -> bool:
    """A read (GET/HEAD) with no Authorization header and a valid session cookie."""
    if request.method not in SAFE_METHODS or "authorization" in request.headers:
        return False
    return cookie_matches(request.cookies.get(COOKIE), token)


def set_session(response: Response, token: str, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        session_value(token),
        max_age=COOKIE_MAX_AGE_S,
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict")


@cache
def _page(name: str) -> tuple[str, str]:
    """A page's HTML and the CSP that admits exactly its inline scripts."""
    html = (files(__package__) / name).read_text(encoding="utf-8")
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _SCRIPT.findall(html)
    )
    csp = (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return html, csp


def page(name: str) -> HTMLResponse:
    """`status.html`, `login.html` or `docs.html` with its security headers."""
    html, csp = _page(name)
    headers = {
        "content-security-policy": csp,
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
    }
    return HTMLResponse(html, headers=headers)
