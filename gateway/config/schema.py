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
    # proxies whose X-Forwarded-For / -Proto are believed (addresses or CIDRs); none by default
    trusted_proxies: tuple[str, ...] = Field((), strict=False)


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


class AdminListen(Strict):
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)


class Admin(Strict):
    token_env: str | None = None  # env var holding the admin bearer token; unset = no admin API
    # serve /admin (API, status page, login) on this address only, never on `listen`
    listen: AdminListen | None = None

    @field_validator("token_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not ENV_RE.match(value):
            raise ValueError(f"token_env must be an environment variable name, got {value!r}")
        return value


SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
STICKY_RE = re.compile(r"^(header:[A-Za-z0-9-]{1,64}|user|api_key)$")


class RateLimit(Strict):
    requests_per_minute: int | None = Field(None, ge=1, le=10_000_000)
    tokens_per_minute: int | None = Field(None, ge=1, le=10_000_000_000)


class ClientKey(Strict):
    id: str = Field(min_length=1, max_length=64)
    sha256: str  # hex SHA-256 of the key; the key itself is never stored
    models: tuple[str, ...] = Field(("*",), strict=False)  # model names, or "*" for all
    allow_pins: bool = True  # may address versions and aliases (chat@v2, x-gateway-version)
    rate_limit: RateLimit = RateLimit()

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not SHA256_RE.match(value):
            raise ValueError("sha256 must be 64 lower-case hex digits (use `gateway keys new`)")
        return value


class Auth(Strict):
    keys: tuple[ClientKey, ...] = Field(min_length=1, strict=False)
    # share of each limit a replica enforces alone while Redis is unreachable (1/replicas = strict)
    fallback_share: float = Field(1.0, gt=0, le=1)
    timeout_ms: int = Field(50, ge=1, le=5000)  # a limited request waits at most this on Redis


class Limits(Strict):
    max_body_bytes: int = Field(DEFAULT_MAX_BODY, ge=1024, le=1 << 30)
    max_response_bytes: int = Field(16 << 20, ge=1024, le=1 << 30)
    max_inflight: int = Field(1024, ge=1, le=1_000_000)  # beyond: 503 with Retry-After
    max_headers: int = Field(100, ge=8, le=10_000)  # header fields per request (431 beyond)
    max_header_bytes: int = Field(32 << 10, ge=1024, le=1 << 20)  # request head size (431)
    header_timeout_s: float = Field(10.0, gt=0, le=600)  # the whole head must arrive by then


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
    max_inflight: int | None = Field(None, ge=1, le=1_000_000)  # beyond: the next version, or 503

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> Any:
        return _jsonable(value)


class Timeouts(Strict):
    connect_s: float = Field(5.0, gt=0, le=600)
    ttft_s: float = Field(120.0, gt=0, le=3600)  # to the first byte (a whole non-streamed answer)
    idle_s: float = Field(60.0, gt=0, le=3600)  # between stream chunks
    total_s: float = Field(3600.0, gt=0, le=86400)  # whole attempt: generous, never a stream killer


RetryOn = Literal["connect", "reset", "timeout", "5xx", "429"]


class Retry(Strict):
    attempts: int = Field(2, ge=1, le=10)  # total tries, each on a different version
    on: tuple[RetryOn, ...] = Field(("connect", "reset", "5xx"), strict=False)
    budget_percent: float = Field(20.0, ge=0, le=100)  # retries in flight vs requests in flight
    min_retries: int = Field(3, ge=0, le=1000)  # retries always allowed in flight (the floor)
    max_retry_after_s: float = Field(1.0, ge=0, le=60)  # a 429 is retried only below this


class Ejection(Strict):
    consecutive_failures: int = Field(5, ge=1, le=1000)  # 0 disables: use enabled: false
    enabled: bool = True
    base_s: float = Field(30.0, gt=0, le=3600)  # first ejection; doubles with each repeat
    max_s: float = Field(300.0, gt=0, le=86400)
    slow_start_s: float = Field(30.0, ge=0, le=3600)  # re-admitted versions ramp up over this
    panic: Literal["route", "fail"] = "route"  # all versions failing: ignore health, or 503


class Defaults(Strict):
    """Route settings every model inherits; a model's own block overrides key by key."""

    retry: Retry = Retry()
    timeouts: Timeouts = Timeouts()
    ejection: Ejection = Ejection()


class CanaryStep(Strict):
    weight: float = Field(gt=0, lt=100)  # candidate share, percent
    min_samples: int = Field(500, ge=1)
    min_duration_s: float = Field(600.0, ge=0)
    max_duration_s: float = Field(3600.0, gt=0)


class CanaryAnalysis(Strict):
    alpha_harm: float = Field(0.05, gt=0, lt=0.5)
    alpha_safe: float = Field(0.05, gt=0, lt=0.5)
    error_margin_rel: float = Field(1.5, gt=1)
    error_margin_abs: float = Field(0.005, ge=0, lt=1)
    latency_margin_rel: float = Field(1.5, gt=1)
    slow_percentile: float = Field(95.0, gt=50, lt=100)
    metric: Literal["latency", "ttft", "none"] = "latency"
    warmup_requests: int = Field(50, ge=0)
    warmup_s: float = Field(60.0, ge=0)
    bucket_s: int = Field(10, ge=1, le=300)  # evidence is judged once per bucket


class CanaryGuardrails(Strict):
    consecutive_failures: int = Field(5, ge=1)
    max_error_rate: float = Field(0.20, gt=0, le=1)
    min_requests: int = Field(20, ge=1)


class Canary(Strict):
    baseline: str
    candidate: str
    steps: tuple[CanaryStep, ...] = Field(
        (
            CanaryStep(weight=10, min_samples=500, min_duration_s=600, max_duration_s=5400),
            CanaryStep(weight=25, min_samples=1000, min_duration_s=600, max_duration_s=3600),
            CanaryStep(weight=50, min_samples=1000, min_duration_s=600, max_duration_s=3600),
        ),
        min_length=1,
        strict=False,
    )
    analysis: CanaryAnalysis = CanaryAnalysis()
    guardrails: CanaryGuardrails = CanaryGuardrails()
    on_inconclusive: Literal["hold", "rollback"] = "hold"
    srm_alpha: float = Field(1e-4, gt=0, lt=0.1)
    promote_alias: str = "stable"  # pointed at the candidate when the canary is promoted
    expected_rps: float | None = Field(None, gt=0)  # for `gateway validate`'s projection
    expected_error_rate: float = Field(0.01, gt=0, lt=1)


class RuleMatch(Strict):
    headers: dict[str, str] = Field(min_length=1)


class Rule(Strict):
    match: RuleMatch
    version: str


class Shadow(Strict):
    version: str
    percent: float = Field(gt=0, le=100)


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
    strategy: Literal["weighted", "performance", "canary"] = "weighted"
    performance: Performance | None = None
    canary: Canary | None = None
    sticky_key: str | None = None  # header:<name> | user | api_key
    rules: tuple[Rule, ...] = Field((), strict=False)  # first match wins; excluded from analysis
    shadow: Shadow | None = None

    @field_validator("sticky_key")
    @classmethod
    def _sticky(cls, value: str | None) -> str | None:
        if value is not None and not STICKY_RE.match(value):
            raise ValueError("sticky_key must be header:<name>, user or api_key")
        return value

    weights: dict[str, float] | None = None  # performance: ceilings in percent of traffic
    fallback: tuple[str, ...] | None = Field(None, strict=False)  # order after the chosen one
    retry: Retry | None = None
    timeouts: Timeouts | None = None
    ejection: Ejection | None = None


class Model(Strict):
    versions: dict[str, Version] = Field(min_length=1)
    aliases: dict[str, str] = Field(default_factory=dict)
    routing: Routing = Routing()


class Logging(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    access: bool = True  # one line per request


class Drain(Strict):
    window_s: float = Field(5.0, ge=0, le=600)  # after SIGTERM: not ready, still serving
    deadline_s: float = Field(30.0, ge=0, le=3600)  # then streams get this long to finish


class GatewayConfig(Strict):
    listen: Listen = Listen()
    store: Store = Store()
    limits: Limits = Limits()
    admin: Admin = Admin()
    auth: Auth | None = None  # no auth section: an open gateway (local use only)
    drain: Drain = Drain()
    logging: Logging = Logging()
    defaults: Defaults = Defaults()
    models: dict[str, Model] = Field(min_length=1)


def merged(default: Strict, override: Strict | None) -> Any:
    """`default` with the keys explicitly set in `override` replaced."""
    if override is None:
        return default
    return default.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


def _jsonable(value: Any) -> Any:
    """YAML dates and times become ISO strings so metadata is always JSON-serialisable."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
