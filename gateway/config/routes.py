"""The configuration of models: versions and their upstreams, aliases, and each model's route.

Owns what one field of a model can say about itself (types, ranges, URL form, name syntax);
`schema.py` holds the process-level sections and the root. Every field carries the description
the generated reference (`docs/configuration.md`) shows.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from gateway.config.base import Strict, check_env_name
from gateway.config.canary import Canary

STICKY_RE = re.compile(r"^(header:[A-Za-z0-9-]{1,64}|user|api_key)$")
Endpoint = Literal[
    "chat",
    "completions",
    "embeddings",
    "responses",
    "images",
    "audio.speech",
    "audio.transcriptions",
    "moderations",
    "rerank",
]
DEFAULT_ENDPOINTS: tuple[Endpoint, ...] = ("chat", "completions", "embeddings", "responses")


class Upstream(Strict):
    """The OpenAI-compatible server that runs a version."""

    url: str = Field(
        description="Base URL, e.g. `http://host:8000/v1` (http or https; no credentials, "
        "query or fragment). Clients can never choose it."
    )
    model: str = Field(
        min_length=1, max_length=256, description="The model name sent upstream in `model`."
    )
    api_key_env: str | None = Field(
        None,
        description="Environment variable holding the upstream's key, sent as a bearer token "
        "(never the key itself). `serve` refuses to start while it is unset.",
    )
    endpoints: tuple[Endpoint, ...] = Field(
        DEFAULT_ENDPOINTS,
        strict=False,
        min_length=1,
        description="The OpenAI endpoints this upstream serves: `chat`, `completions`, "
        "`embeddings`, `responses` (the default four), `images` (`/images/generations`), "
        "`audio.speech`, `audio.transcriptions`, `moderations`, `rerank`. A request for an "
        "endpoint none of a model's versions declares answers 404; versions that lack it are "
        "never chosen for it.",
    )

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
        return check_env_name(value, "api_key_env")


class Version(Strict):
    """One immutable release of a model: a change is a new version id."""

    upstream: Upstream = Field(description="Where the version runs.")
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form lineage shown by `/v1/models`: `created`, `run_id`, "
        "`code_version`, `params`, `metrics`, `description`, ... (YAML dates become ISO text).",
    )
    max_inflight: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Requests in flight on this version per process; beyond it the next "
        "version is tried, or 503.",
    )

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> Any:
        return _jsonable(value)


class Timeouts(Strict):
    """Per-attempt deadlines, in seconds (they fire up to 50 ms late, never early)."""

    connect_s: float = Field(5.0, gt=0, le=600, description="To open the upstream connection.")
    ttft_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="To the first upstream byte (for a non-streamed request, the whole answer).",
    )
    idle_s: float = Field(60.0, gt=0, le=3600, description="Between stream chunks.")
    total_s: float = Field(
        3600.0, gt=0, le=86400, description="The whole attempt: generous, never a stream killer."
    )


RetryOn = Literal["connect", "reset", "timeout", "5xx", "429"]


class Retry(Strict):
    """Retries before the first byte reaches the client, each on a different version."""

    attempts: int = Field(2, ge=1, le=10, description="Total tries, each on another version.")
    on: tuple[RetryOn, ...] = Field(
        ("connect", "reset", "5xx"),
        strict=False,
        description="Failures that are retried: `connect`, `reset`, `timeout` (no first byte "
        "within `ttft_s`), `5xx`, `429`. A client's 4xx never is.",
    )
    budget_percent: float = Field(
        20.0,
        ge=0,
        le=100,
        description="Retries in flight stay below this share of requests in flight.",
    )
    min_retries: int = Field(
        3, ge=0, le=1000, description="Retries always allowed in flight (the budget's floor)."
    )
    max_retry_after_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="A 429 is retried only when its `Retry-After` is at most this.",
    )


class Ejection(Strict):
    """Outlier ejection: versions failing in a row are taken out of rotation for a while."""

    consecutive_failures: int = Field(
        5, ge=1, le=1000, description="Upstream-caused failures in a row that eject a version."
    )
    enabled: bool = Field(True, description="`false` never ejects.")
    base_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="The first ejection; it doubles with each repeat (±10 % jitter).",
    )
    max_s: float = Field(300.0, gt=0, le=86400, description="The longest ejection.")
    slow_start_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="A re-admitted version ramps from 10 % to its full share over this.",
    )
    panic: Literal["route", "fail"] = Field(
        "route",
        description="When every version is failing: `route` ignores health, `fail` answers 503 "
        "(one probe a second still goes through).",
    )


class Defaults(Strict):
    """Route settings every model inherits; a model's own block overrides key by key."""

    retry: Retry = Field(Retry(), description="Retries and the retry budget.")
    timeouts: Timeouts = Field(Timeouts(), description="Attempt deadlines.")
    ejection: Ejection = Field(Ejection(), description="Outlier ejection.")


class RuleMatch(Strict):
    """What a request must carry for a rule to apply."""

    headers: dict[str, str] = Field(
        min_length=1,
        description="Header name → exact value; all must match (names case-insensitive).",
    )


class Rule(Strict):
    """A slice of traffic (a tenant, internal testers) sent to one version; first match wins.
    Rule-routed requests are excluded from canary analysis."""

    match: RuleMatch = Field(description="The condition.")
    version: str = Field(description="The version such requests go to (others are fallbacks).")


class Shadow(Strict):
    """Copies of a share of requests sent to a version, answers discarded, never delaying
    the client; recorded under their own series."""

    version: str = Field(description="The version that receives the copies.")
    percent: float = Field(gt=0, le=100, description="Share of requests copied.")


class ScoreWeights(Strict):
    """Weights of the components of `objective: score`."""

    errors: float = Field(1.0, ge=0, description="Weight of the success rate.")
    latency: float = Field(1.0, ge=0, description="Weight of the fast-latency rate.")
    ttft: float = Field(0.0, ge=0, description="Weight of the fast-TTFT rate.")


class Performance(Strict):
    """Live-metric version selection among interchangeable versions (`strategy: performance`);
    `routing.weights` are then ceilings in percent."""

    objective: Literal["latency", "ttft", "errors", "score"] = Field(
        "latency",
        description="`latency` and `ttft` judge errors and speed, `errors` only errors, "
        "`score` mixes them by `score_weights`.",
    )
    score_weights: ScoreWeights = Field(ScoreWeights(), description="For `objective: score`.")
    versions: list[str] | None = Field(None, description="The interchangeable versions (all).")
    min_samples: int = Field(
        20, ge=1, le=1_000_000, description="Judged attempts before a version's numbers count."
    )
    min_share: float = Field(
        0.05, ge=0, le=0.5, description="Exploration floor: every version keeps this share."
    )
    tolerance: float = Field(
        0.05, gt=0, lt=1, description="Success rates (and scores) this close count as equal."
    )
    fast_tolerance: float = Field(
        0.1, gt=0, lt=1, description="Fast rates (latency, TTFT) this close count as equal."
    )
    half_life_s: float = Field(
        5.0, gt=0, le=3600, description="Evidence fades with this half-life."
    )
    slow_start_s: float = Field(
        20.0, ge=0, le=3600, description="A version below its fair share regains it over this."
    )
    recompute_s: float = Field(
        1.0, ge=0.05, le=300, description="Weights are recomputed this often."
    )
    fast_factor: float = Field(
        1.5, ge=1.0, le=100, description="Fast = under max(best median × this, ...)."
    )
    fast_margin_ms: float = Field(10.0, ge=0, le=600_000, description="... best median + this).")
    fast_ms: float | None = Field(
        None, gt=0, le=3_600_000, description="A fixed fast-latency threshold instead."
    )
    fast_ttft_ms: float | None = Field(
        None, gt=0, le=3_600_000, description="A fixed fast-TTFT threshold instead."
    )
    draws: int = Field(1000, ge=100, le=100_000, description="Posterior draws per recompute.")

    @model_validator(mode="after")
    def _score(self) -> Performance:
        w = self.score_weights
        if self.objective == "score" and w.errors + w.latency + w.ttft <= 0:
            raise ValueError("score_weights must have a positive weight")
        return self


class Routing(Strict):
    """How a model's requests are spread over its versions, and what happens when one fails."""

    strategy: Literal["weighted", "performance", "canary"] = Field(
        "weighted", description="`weighted`, `performance` (live metrics) or `canary`."
    )
    weights: dict[str, float] | None = Field(
        None,
        description="Version → relative weight, a finite number from 0 to 1e6 (0 keeps a version "
        "registered but idle); "
        "optional with one version or a `stable` alias. With `performance`: ceilings in percent.",
    )
    performance: Performance | None = Field(None, description="With `strategy: performance`.")
    canary: Canary | None = Field(None, description="With `strategy: canary`.")
    sticky_key: str | None = Field(
        None,
        description="Keeps a caller on one version while weights hold: `header:<name>`, `user` "
        "(the body's `user` field) or `api_key`. Raising a canary's weight only moves keys into "
        "the canary.",
    )
    rules: tuple[Rule, ...] = Field((), strict=False, description="Header rules; first match wins.")
    shadow: Shadow | None = Field(None, description="Copies of requests to a version.")
    follow_alias: str | None = Field(
        None,
        description="Send all default traffic to the version this alias names (a registry alias "
        "such as `champion` moves with the registry); not with `weights` or another strategy.",
    )
    fallback: tuple[str, ...] | None = Field(
        None,
        strict=False,
        description="Order of versions tried after the chosen one (default: the others, "
        "heaviest first).",
    )
    retry: Retry | None = Field(None, description="Overrides `defaults.retry` key by key.")
    timeouts: Timeouts | None = Field(None, description="Overrides `defaults.timeouts`.")
    ejection: Ejection | None = Field(None, description="Overrides `defaults.ejection`.")

    @field_validator("sticky_key")
    @classmethod
    def _sticky(cls, value: str | None) -> str | None:
        if value is not None and not STICKY_RE.match(value):
            raise ValueError("sticky_key must be header:<name>, user or api_key")
        return value

    @model_validator(mode="after")
    def _follow(self) -> Routing:
        if self.follow_alias is not None and (self.strategy != "weighted" or self.weights):
            raise ValueError("follow_alias needs strategy: weighted and no weights")
        return self


class RegistryTags(Strict):
    """Names of the model-version tags that say where a registry version is served."""

    serving_url: str = Field(
        "serving_url", min_length=1, description="Tag holding the base URL of the upstream."
    )
    upstream_model: str = Field(
        "upstream_model",
        min_length=1,
        description="Tag holding the model name sent upstream (default: the registered name).",
    )


class ModelRegistry(Strict):
    """This model's versions also come from the model registry (`registry.mlflow`)."""

    name: str | None = Field(
        None, min_length=1, description="The registered model's name (default: this model's)."
    )
    tags: RegistryTags = Field(RegistryTags(), description="Tag names read on each version.")
    url_template: str | None = Field(
        None,
        description="Upstream URL for versions without a `serving_url` tag, e.g. "
        "`http://chat-{version}.models.svc:8000/v1` (`{version}` is the version number).",
    )
    api_key_env: str | None = Field(
        None, description="Environment variable holding the upstream key of registry versions."
    )

    @field_validator("url_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "{version}" not in value:
            raise ValueError("url_template must contain {version}")
        Upstream._url(value.replace("{version}", "1"))
        return value

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return check_env_name(value, "api_key_env")


class Model(Strict):
    """A public model name (what clients send as `model`) and its versions."""

    versions: dict[str, Version] = Field(
        default_factory=dict,
        description="Version id → version (at least one, unless `registry` supplies them).",
    )
    registry: ModelRegistry | None = Field(
        None, description="Versions, aliases and lineage from the model registry."
    )
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Alias → version id (`stable`, `canary`); clients may pin `chat@stable`.",
    )
    routing: Routing = Field(Routing(), description="The route.")

    @model_validator(mode="after")
    def _some_version(self) -> Model:
        if not self.versions and self.registry is None:
            raise ValueError("a model needs at least one version (or a registry block)")
        if self.routing.canary and self.routing.canary.from_registry and self.registry is None:
            raise ValueError("routing.canary.from_registry needs the model's registry block")
        return self


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
