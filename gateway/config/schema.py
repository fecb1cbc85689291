"""The configuration's typed, frozen shape: key names, types, defaults and single-field rules.

Owns what one field can say about itself (types, ranges, URL form, name syntax). Rules that relate
fields to each other (a weight naming an unknown version) live in `checks.py`. Unknown keys are
errors everywhere (`extra="forbid"`); types are strict (a string is never silently a number).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-/]{0,127}$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_MAX_BODY = 8 << 20


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def check_name(value: str, what: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            f"invalid {what} name {value!r}: use letters, digits and . _ - : / (no '@', max 128)"
        )
    return value


class Listen(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


class Store(Strict):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"


class Admin(Strict):
    token_env: str | None = None  # env var holding the admin bearer token; unset = no admin API

    @field_validator("token_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not ENV_RE.match(value):
            raise ValueError(f"token_env must be an environment variable name, got {value!r}")
        return value


class Limits(Strict):
    max_body_bytes: int = Field(DEFAULT_MAX_BODY, ge=1024, le=1 << 30)
    max_response_bytes: int = Field(16 << 20, ge=1024, le=1 << 30)


class Upstream(Strict):
    url: str
    model: str = Field(min_length=1, max_length=256)
    api_key_env: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"upstream url must be http:// or https://, got {value!r}")
        if not parts.hostname:
            raise ValueError(f"upstream url has no host: {value!r}")
        if parts.username or parts.password or "@" in parts.netloc:
            raise ValueError("upstream url must not carry credentials (use api_key_env)")
        if parts.query or parts.fragment:
            raise ValueError(f"upstream url must not have a query or fragment: {value!r}")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"upstream url has a bad port: {value!r}") from exc
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not ENV_RE.match(value):
            raise ValueError(f"api_key_env must be an environment variable name, got {value!r}")
        return value


class Version(Strict):
    upstream: Upstream
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> Any:
        return _jsonable(value)


class Timeouts(Strict):
    connect_s: float = Field(5.0, gt=0, le=600)
    ttft_s: float = Field(60.0, gt=0, le=3600)
    idle_s: float = Field(30.0, gt=0, le=3600)
    total_s: float = Field(900.0, gt=0, le=86400)


class Routing(Strict):
    strategy: Literal["weighted"] = "weighted"
    weights: dict[str, float] | None = None
    timeouts: Timeouts = Timeouts()


class Model(Strict):
    versions: dict[str, Version] = Field(min_length=1)
    aliases: dict[str, str] = Field(default_factory=dict)
    routing: Routing = Routing()


class GatewayConfig(Strict):
    listen: Listen = Listen()
    store: Store = Store()
    limits: Limits = Limits()
    admin: Admin = Admin()
    models: dict[str, Model] = Field(min_length=1)


def _jsonable(value: Any) -> Any:
    """YAML dates and times become ISO strings so metadata is always JSON-serialisable."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
