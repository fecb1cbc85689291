"""Sticky assignment: a request's key (session header, OpenAI `user`, or API key) → a fixed point
in [0, 1).

The point replaces the random draw of a weighted split, so a key stays on one version while the
weights are unchanged; with the canary first in the order, raising its weight only moves keys
*into* the canary (the points below the new weight include those below the old one). The hash is
salted per route, so assignments are independent across models and rollouts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from gateway.routing.base import RequestContext

KeyOf = Callable[[RequestContext], bytes | None]
SCALE = float(1 << 64)


def key_getter(spec: str | None) -> KeyOf | None:
    """The function that reads the key named by a `sticky_key` setting (validated before)."""
    if spec is None:
        return None
    if spec == "user":
        return _user
    if spec == "api_key":
        return _client
    header = spec.removeprefix("header:").lower().encode()
    return lambda ctx: ctx.headers.get(header) or None


def _user(ctx: RequestContext) -> bytes | None:
    user = ctx.body.get("user")
    return user.encode() if isinstance(user, str) and user else None


def _client(ctx: RequestContext) -> bytes | None:
    return ctx.client.encode() if ctx.client else None


def point(salt: bytes, key: bytes) -> float:
    """A uniform point in [0, 1) fixed by (salt, key)."""
    digest = hashlib.blake2b(key, digest_size=8, key=salt[:64]).digest()
    return int.from_bytes(digest, "big") / SCALE
