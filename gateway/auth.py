"""Client API keys: who is calling, and which models (and pins) they may use.

Owns the key table built from `auth.keys`. Keys live in the config only as SHA-256 digests; a
presented key is hashed and looked up by its digest, so no comparison ever runs on key material:
timing can at most reveal how a digest compares, which says nothing about any key (a preimage
would be needed). Missing or wrong keys are 401; a model the key
may not use is 403, and its message never lists other keys' models. Without an `auth` section the
gateway is open (for local use; the start-up log says so loudly).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from gateway.config.schema import Auth, RateLimit
from gateway.errors import ClientError


class Unauthenticated(ClientError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(ClientError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    models: frozenset[str] | None  # None: every model
    allow_pins: bool
    rate_limit: RateLimit
    max_inflight: int | None = None  # None: the default share of `limits.max_inflight`

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models

    def check(self, model: str, pinned: bool) -> None:
        if not self.may_use(model):
            raise Forbidden(f"this API key may not use model {model!r}")
        if pinned and not self.allow_pins:
            raise Forbidden("this API key may not pin versions or aliases")


OPEN = Client("anonymous", None, True, RateLimit())


class KeyTable:
    def __init__(self, auth: Auth | None) -> None:
        self.open = auth is None
        self._by_digest: dict[bytes, Client] = {}
        self.ids = tuple(key.id for key in auth.keys) if auth else ()  # configured key ids
        for key in auth.keys if auth else ():
            models = None if "*" in key.models else frozenset(key.models)
            client = Client(key.id, models, key.allow_pins, key.rate_limit, key.max_inflight)
            self._by_digest[bytes.fromhex(key.sha256)] = client

    def authenticate(self, authorization: bytes | None) -> Client:
        """The client presenting `Authorization: Bearer <key>`, or 401."""
        if self.open:
            return OPEN
        scheme, _, key = (authorization or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not key or len(key) > 512:
            raise Unauthenticated("missing or malformed API key (send Authorization: Bearer <key>)")
        client = self._by_digest.get(hashlib.sha256(key.strip()).digest())
        if client is None:
            raise Unauthenticated("invalid API key")
        return client


def new_key() -> tuple[str, str]:
    """A fresh random key and its SHA-256 hex digest."""
    key = "gw-" + secrets.token_urlsafe(32)
    return key, hashlib.sha256(key.encode()).hexdigest()
