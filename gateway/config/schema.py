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

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    """Where live per-version metrics live (see gateway/store); times in seconds."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"  # env GATEWAY_REDIS_URL overrides
    cluster: bool = False  # redis_url names one node of a Redis Cluster
    key_prefix: str = Field("gw", pattern=r"^[A-Za-z0-9_.\-]{1,32}$")
    bucket_s: int = Field(5, ge=1, le=300)
    window_s: int = Field(60, ge=2, le=3600)
    flush_interval_s: float = Field(0.25, gt=0, le=0.25)
    refresh_interval_s: float = Field(1.0, gt=0, le=1.0)
    timeout_ms: int = Field(200, ge=10, le=5000)
    buffer_size: int = Field(100_000, ge=100, le=10_000_000)
    slow_ms: list[int] = Field(default_factory=lambda: [1000, 5000], max_length=8)
    breaker_failures: int = Field(2, ge=1, le=100)
    backoff_max_s: float = Field(2.0, ge=0.05, le=60)

    @field_validator("redis_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("redis_url must be redis://, rediss:// or unix://")
        return value

    @field_validator("slow_ms")
    @classmethod
    def _slow(cls, value: list[int]) -> list[int]:
        if any(ms <= 0 for ms in value):
            raise ValueError("slow_ms thresholds must be positive milliseconds")
        return sorted(set(value))

    @model_validator(mode="after")
    def _window(self) -> Store:
        if self.window_s < 2 * self.bucket_s:
            raise ValueError("window_s must be at least two buckets (2 × bucket_s)")
        return self


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


class ScoreWeights(Strict):
    errors: float = Field(1.0, ge=0)
    latency: float = Field(1.0, ge=0)
    ttft: float = Field(0.0, ge=0)


class Performance(Strict):
    """`routing.performance`: live-metric version selection (see gateway/routing/performance)."""

    objective: Literal["latency", "ttft", "errors", "score"] = "latency"
    score_weights: ScoreWeights = ScoreWeights()
    versions: list[str] | None = None  # the interchangeable versions (default: all)
    min_samples: int = Field(20, ge=1, le=1_000_000)
    min_share: float = Field(0.05, ge=0, le=0.5)
    tolerance: float = Field(0.05, gt=0, lt=1)  # on the success rate (and the score)
    fast_tolerance: float = Field(0.1, gt=0, lt=1)  # on the fast rate (latency, ttft)
    half_life_s: float = Field(5.0, gt=0, le=3600)
    slow_start_s: float = Field(20.0, ge=0, le=3600)
    recompute_s: float = Field(1.0, ge=0.05, le=300)
    fast_factor: float = Field(1.5, ge=1.0, le=100)
    fast_margin_ms: float = Field(10.0, ge=0, le=600_000)
    fast_ms: float | None = Field(None, gt=0, le=3_600_000)
    fast_ttft_ms: float | None = Field(None, gt=0, le=3_600_000)
    draws: int = Field(1000, ge=100, le=100_000)

    @model_validator(mode="after")
    def _score(self) -> Performance:
        w = self.score_weights
        if self.objective == "score" and w.errors + w.latency + w.ttft <= 0:
            raise ValueError("score_weights must have a positive weight")
        return self


class Routing(Strict):
    strategy: Literal["weighted", "performance"] = "weighted"
    weights: dict[str, float] | None = None  # performance: ceilings in percent of traffic
    timeouts: Timeouts = Timeouts()
    performance: Performance | None = None


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
