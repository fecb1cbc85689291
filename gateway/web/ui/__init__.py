"""The operator status page: a read-only HTML view of the admin API.

Owns the static pages shipped as package data (`status.html`, served at `GET /admin/ui` on the
guarded admin router; `login.html`, the public form at `GET /login`; `docs.html`, the API
reference at `GET /docs`, which renders the OpenAPI document in the browser with no CDN) and their
security headers (a Content-Security-Policy that admits only the page's own inline script by
hash, no framing, no caching). The browser session the page runs on is
`gateway.web.admin_auth`'s.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib.resources import files

from fastapi.responses import HTMLResponse

_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


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
