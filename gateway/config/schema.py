"""The configuration's typed, frozen shape: the root (`GatewayConfig`) and the process-level
sections (listen, store, limits, admin, auth, drain, logging, defaults).

Owns what one field can say about itself (types, ranges, URL form, name syntax); the per-model
sections live in `routes.py`. Rules that relate fields to each other (a weight naming an
unknown version) live in `checks.py`. Unknown keys are errors everywhere (`extra="forbid"`);
types are strict (a string is never silently a number). Every field carries the description
the generated reference (`docs/configuration.md`) shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from gateway.config.base import Strict, check_env_name, check_http_url
from gateway.config.routes import Defaults, Model

DEFAULT_MAX_BODY = 8 << 20
REDIS_URL_ENV = "GATEWAY_REDIS_URL"
MLFLOW_URI_ENV = "MLFLOW_TRACKING_URI"
HOST_RE = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.\-]{0,252})$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class Listen(Strict):
    """Where `gateway serve` listens for clients."""

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8080, ge=0, le=65535, description="Port to bind.")
    trusted_proxies: tuple[str, ...] = Field(
        (),
        strict=False,
        description="Addresses or CIDRs whose `X-Forwarded-For` / `-Proto` are believed "
        "(none by default).",
    )


class Store(Strict):
    """Where live per-version metrics and shared control state live; times in seconds."""

    backend: Literal["memory", "redis"] = Field(
        "memory",
        description="`memory`: this process only. `redis`: shared by every worker and replica.",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="`redis://`, `rediss://` or `unix://`; `GATEWAY_REDIS_URL` overrides it.",
    )
    cluster: bool = Field(False, description="`redis_url` names one node of a Redis Cluster.")
    key_prefix: str = Field(
        "gw", pattern=r"^[A-Za-z0-9_.\-]{1,32}$", description="Prefix of every Redis key."
    )
    bucket_s: int = Field(5, ge=1, le=300, description="Width of one time bucket of counters.")
    window_s: int = Field(60, ge=2, le=3600, description="The live window (at least two buckets).")
    flush_interval_s: float = Field(
        0.25, gt=0, le=0.25, description="How often counters are written to the store."
    )
    refresh_interval_s: float = Field(
        1.0, gt=0, le=1.0, description="How often the routing snapshot is re-read."
    )
    timeout_ms: int = Field(
        200, ge=10, le=5000, description="Bound on every Redis call of the background loops."
    )
    buffer_size: int = Field(
        100_000,
        ge=100,
        le=10_000_000,
        description="Requests counted per flush interval; beyond it they are dropped and counted.",
    )
    slow_ms: list[int] = Field(
        default_factory=lambda: [1000, 5000],
        max_length=8,
        description="Latency thresholds (ms) whose exceedances are counted per version.",
    )
    breaker_failures: int = Field(
        2, ge=1, le=100, description="Failed Redis calls in a row that open the breaker."
    )
    backoff_max_s: float = Field(
        2.0, ge=0.05, le=60, description="Longest wait between reconnection probes."
    )

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

    def url(self, environ: Mapping[str, str]) -> str:
        """The Redis URL: `GATEWAY_REDIS_URL` from the environment if set, else `redis_url`."""
        return environ.get(REDIS_URL_ENV) or self.redis_url


class Responses(Strict):
    """The Responses API's memory of which version created which response id."""

    ttl_s: int = Field(
        30 * 86400,
        ge=60,
        le=365 * 86400,
        description="How long a response id stays routable to the version that created it "
        "(`previous_response_id`, `GET`/`DELETE`/`cancel`); then it answers 404. Default 30 "
        "days, OpenAI's own retention.",
    )
    local_entries: int = Field(
        100_000,
        ge=100,
        le=10_000_000,
        description="Ids each process keeps in memory (the oldest are forgotten first; with "
        "`store.backend: redis` they are still found in Redis).",
    )


class AdminListen(Strict):
    """A separate listener for the admin API, the status page and its login form."""

    host: str = Field("127.0.0.1", description="Address to bind (keep it private).")
    port: int = Field(ge=1, le=65535, description="Port to bind; must differ from `listen.port`.")


class Admin(Strict):
    """The admin API (`/admin/...`), never open by default."""

    token_env: str | None = Field(
        None,
        description="Environment variable holding the admin bearer token; unset or empty: no "
        "admin API at all.",
    )
    listen: AdminListen | None = Field(
        None, description="Serve the admin surface only there (none on the client port)."
    )
    session_ttl_s: int = Field(
        8 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="A status-page session ends this long after sign-in (sooner on sign-out).",
    )
    secure_cookie: Literal["auto", "always"] = Field(
        "auto",
        description="`auto`: the session cookie is `Secure` when the request came over https "
        "(directly, or as `X-Forwarded-Proto` from `listen.trusted_proxies`); `always`: set it "
        "anyway (TLS terminated by a proxy the gateway does not trust for headers).",
    )
    max_failures_per_minute: int = Field(
        10,
        ge=1,
        le=10_000,
        description="Wrong admin tokens one source address may send a minute; beyond, every "
        "admin authentication from it gets 429 with `Retry-After` until the minute is over.",
    )

    @field_validator("token_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return check_env_name(value, "token_env")


class RateLimit(Strict):
    """Per-key limits, per minute (GCRA: a full minute of burst, then the steady rate)."""

    requests_per_minute: int | None = Field(
        None, ge=1, le=10_000_000, description="Requests a minute (none: unlimited)."
    )
    tokens_per_minute: int | None = Field(
        None,
        ge=1,
        le=10_000_000_000,
        description="Prompt plus completion tokens a minute (none: unlimited).",
    )


class ClientKey(Strict):
    """One client API key, stored only as its SHA-256 digest."""

    id: str = Field(
        min_length=1, max_length=64, description="A name for the key (logs, metrics; not secret)."
    )
    sha256: str = Field(
        description="Hex SHA-256 of the key (`gateway keys new` prints it); never the key."
    )
    models: tuple[str, ...] = Field(
        ("*",), strict=False, description="Model names the key may use, or `*` for all."
    )
    allow_pins: bool = Field(
        True, description="May address versions and aliases (`chat@v2`, `x-gateway-version`)."
    )
    rate_limit: RateLimit = Field(RateLimit(), description="Per-key limits (none by default).")
    max_inflight: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Requests of this key in flight per process → 429 beyond (counted from the "
        "moment its head is authenticated, so slow bodies count). Unset: half of "
        "`limits.max_inflight`, so one key can never take every slot.",
    )

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not SHA256_RE.match(value):
            raise ValueError("sha256 must be 64 lower-case hex digits (use `gateway keys new`)")
        return value


class Auth(Strict):
    """Client keys; without this section the gateway is open (for local use only)."""

    keys: tuple[ClientKey, ...] = Field(min_length=1, strict=False, description="The keys.")
    fallback_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Share of each limit one replica enforces alone while Redis is unreachable "
        "(1/replicas for a strict bound).",
    )
    timeout_ms: int = Field(
        50, ge=1, le=5000, description="A limited request waits at most this on Redis."
    )


class Limits(Strict):
    """Bounds on what one request may cost the gateway."""

    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY,
        ge=1024,
        le=1 << 30,
        description="Request body cap, counted while reading (chunked bodies too) → 413.",
    )
    max_response_bytes: int = Field(
        16 << 20, ge=1024, le=1 << 30, description="Cap on a non-streamed upstream answer → 502."
    )
    max_inflight: int = Field(
        1024, ge=1, le=1_000_000, description="Requests in flight per process → 503 beyond."
    )
    max_headers: int = Field(
        100, ge=8, le=10_000, description="Header fields per request → 431 beyond."
    )
    max_header_bytes: int = Field(
        32 << 10, ge=1024, le=1 << 20, description="Request head size → 431 beyond."
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=600, description="The whole request head must arrive by then."
    )
    max_pending_body_bytes: int = Field(
        256 << 20,
        ge=1 << 20,
        le=1 << 40,
        description="Memory all request bodies still arriving may hold together, per process "
        "→ 503 (`pending_bodies_full`) for bodies that would grow it further.",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A JSON request body must have arrived this long after its head was "
        'authenticated → 408 (`gateway_rejected_total{reason="body_timeout"}`).',
    )


class MetricsAccess(Strict):
    """Who may read `GET /metrics` on the client port."""

    require: Literal["none", "key", "admin"] = Field(
        "none",
        description="`none`: anyone who reaches the port (compatible default); `key`: a client "
        "key listed in `key_ids`; `admin`: the admin token. The admin surface always serves "
        "the same text at `GET /admin/metrics` (the recommended scrape target).",
    )
    key_ids: tuple[str, ...] = Field(
        (),
        strict=False,
        description="With `require: key`: ids of the client keys that may scrape (a dedicated "
        "key for Prometheus, not the tenants' keys).",
    )


class Logging(Strict):
    """Log lines on standard error."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Level.")
    format: Literal["json", "text"] = Field(
        "json", description="One JSON object per line, or text."
    )
    access: bool = Field(True, description="One access line per request.")


class Drain(Strict):
    """Graceful shutdown on SIGTERM."""

    window_s: float = Field(
        5.0, ge=0, le=600, description="Not ready, still serving (load balancers notice)."
    )
    deadline_s: float = Field(
        30.0, ge=0, le=3600, description="Then requests in flight get this long to finish."
    )


class Mlflow(Strict):
    """An MLflow tracking server whose model registry supplies versions (docs/registry.md)."""

    tracking_uri: str | None = Field(
        None,
        description="Base URL of the tracking server, e.g. `http://mlflow:5000`; "
        "`MLFLOW_TRACKING_URI` is used when this is unset.",
    )
    token_env: str | None = Field(
        None, description="Environment variable holding a bearer token for the server."
    )
    allowed_upstreams: tuple[str, ...] = Field(
        min_length=1,
        strict=False,
        description="Where registry versions may be served: host names (`models.svc`, "
        "`*.models.svc` for subdomains) or URL prefixes (`http://10.0.0.5:8000/`). Versions "
        "outside are refused: whoever can write registry tags could otherwise point traffic "
        "anywhere.",
    )
    poll_s: float = Field(10.0, ge=0.1, le=3600, description="How often the registry is read.")
    timeout_s: float = Field(5.0, gt=0, le=120, description="Bound on each registry call.")
    backoff_max_s: float = Field(
        60.0, ge=0.1, le=3600, description="Longest wait between retries while it fails."
    )
    cache_path: str | None = Field(
        None,
        description="File keeping the last good registry view; read at start when the "
        "registry cannot be reached.",
    )
    max_versions: int = Field(
        1000, ge=1, le=100_000, description="Newest versions read per registered model."
    )

    @field_validator("tracking_uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value, "tracking_uri")

    @field_validator("token_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return check_env_name(value, "token_env")

    @field_validator("allowed_upstreams")
    @classmethod
    def _allowed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if "://" in entry:
                check_http_url(entry, "allowed_upstreams entry")
            elif not HOST_RE.match(entry):
                raise ValueError(f"allowed_upstreams: {entry!r} is neither a host nor a URL")
        return value

    def uri(self, environ: Mapping[str, str]) -> str | None:
        """The tracking server: `tracking_uri`, else `MLFLOW_TRACKING_URI`."""
        uri = self.tracking_uri or environ.get(MLFLOW_URI_ENV)
        return uri.rstrip("/") if uri else None


class Registry(Strict):
    """Model registries versions are read from."""

    mlflow: Mlflow = Field(description="The MLflow model registry.")


class Tracing(Strict):
    """OpenTelemetry traces over OTLP/HTTP (needs the `tracing` extra); the exporter, batching
    and resource also follow the standard `OTEL_*` environment variables. Read at start-up."""

    enabled: bool = Field(False, description="Export a span per request and per upstream attempt.")
    endpoint: str | None = Field(
        None,
        description="OTLP/HTTP traces URL (e.g. `http://collector:4318/v1/traces`); none: "
        "`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT` or localhost:4318.",
    )
    service_name: str = Field(
        "llm-gateway",
        min_length=1,
        max_length=128,
        description="`service.name` of the spans (`OTEL_SERVICE_NAME` overrides it).",
    )
    sample_ratio: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of new traces kept (parent-based: an incoming `traceparent` keeps its "
        "own decision); none: `OTEL_TRACES_SAMPLER`, else every trace. A recorded trace costs "
        "about 450 µs of CPU, one not kept a few µs: set it under load (docs/operations.md).",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("endpoint must be an http:// or https:// URL")
        return value


class Cors(Strict):
    """Cross-origin requests from browsers (off by default: no CORS header is ever sent)."""

    allow_origins: tuple[str, ...] = Field(
        (),
        strict=False,
        description="Origins allowed (`https://app.example.com`), or `*` for any; empty: off.",
    )
    allow_headers: tuple[str, ...] = Field(
        ("authorization", "content-type", "x-request-id", "x-gateway-version"),
        strict=False,
        description="Request headers a browser may send (answered to preflights).",
    )
    max_age_s: int = Field(
        600, ge=0, le=86_400, description="How long a browser may cache a preflight answer."
    )

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin != "*" and (
                urlsplit(origin).scheme not in ("http", "https")
                or urlsplit(origin).path
                or origin.endswith("/")
            ):
                raise ValueError(f"origin {origin!r} must be `*` or scheme://host[:port]")
        return value


class GatewayConfig(Strict):
    """A whole gateway config file."""

    listen: Listen = Field(Listen(), description="The client listener.")
    store: Store = Field(Store(), description="Live metrics and shared state.")
    responses: Responses = Field(Responses(), description="Response id → version memory.")
    limits: Limits = Field(Limits(), description="Per-request bounds.")
    admin: Admin = Field(Admin(), description="The admin API.")
    auth: Auth | None = Field(None, description="Client keys (none: an open gateway).")
    drain: Drain = Field(Drain(), description="Graceful shutdown.")
    metrics: MetricsAccess = Field(MetricsAccess(), description="Access to `/metrics`.")
    logging: Logging = Field(Logging(), description="Logs.")
    tracing: Tracing = Field(Tracing(), description="OpenTelemetry traces (off by default).")
    cors: Cors = Field(Cors(), description="Browser cross-origin access (off by default).")
    defaults: Defaults = Field(Defaults(), description="Route settings every model inherits.")
    registry: Registry | None = Field(
        None, description="A model registry supplying versions (none: versions come from here)."
    )
    models: dict[str, Model] = Field(min_length=1, description="Public model name → model.")
