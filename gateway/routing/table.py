"""The runtime table the data path reads: models, immutable versions, aliases, policies.

Built once from a validated config (`Registry.build`), never edited; a new config builds a new
registry. Owns name resolution: `chat`, `chat@v2`, `chat@stable`, and the `x-gateway-version`
header pin, each answered from dict lookups (no scans on the request path).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config.routes import Defaults, Ejection, Model, Retry, Timeouts, merged
from gateway.config.schema import GatewayConfig
from gateway.errors import BadRequest, ModelNotFound, NotFound
from gateway.routing import PerformancePolicy, Policy, build_policy

# endpoint name (`upstream.endpoints`) -> its path under the upstream's base URL
ENDPOINT_PATHS = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "responses": "/responses",
    "images": "/images/generations",
    "audio.speech": "/audio/speech",
    "audio.transcriptions": "/audio/transcriptions",
    "moderations": "/moderations",
    "rerank": "/rerank",
}
PROXY_PATHS = tuple(ENDPOINT_PATHS.values())
RESPONSES_PATH = "/v1/responses"


@dataclass(frozen=True, slots=True)
class VersionEntry:
    model: str
    id: str
    upstream_model: str
    urls: Mapping[str, str]  # gateway path ("/v1/chat/completions") -> upstream URL (declared)
    base_url: str  # the upstream's base URL (`/responses/{id}` calls are made under it)
    api_key: str | None
    metadata: Mapping[str, Any]
    created: int
    response_headers: tuple[tuple[bytes, bytes], ...]  # x-gateway-model / x-gateway-version
    max_inflight: int | None
    forward_headers: frozenset[bytes] = frozenset()  # configured extras (lower case)
    secret: bytes = b""  # api_key encoded: what redaction looks for in relayed answers

    def describe(self, aliases: list[str]) -> dict[str, Any]:
        return {
            "id": f"{self.model}@{self.id}",
            "object": "model",
            "created": self.created,
            "owned_by": "gateway",
            "model": self.model,
            "version": self.id,
            "aliases": aliases,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved request: the model, and its pinned version (None: routing picks)."""

    model: ModelEntry
    pinned: VersionEntry | None

    def check_served(self, path: str) -> None:
        """404 unless the pinned version (or, unpinned, some version) serves `path`."""
        model, pinned = self.model, self.pinned
        if path not in (model.paths if pinned is None else pinned.urls):
            who = model.name if pinned is None else f"{model.name}@{pinned.id}"
            raise NotFound(
                f"{path} is not offered by {who!r} (its upstream.endpoints do not list it)",
                code="endpoint_not_supported",
            )


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    versions: Mapping[str, VersionEntry]
    aliases: Mapping[str, str]
    policy: Policy
    timeouts: Timeouts
    retry: Retry
    ejection: Ejection
    fallback: tuple[str, ...] | None
    paths: frozenset[str]  # gateway paths some version serves (others answer 404)
    common_paths: frozenset[str]  # gateway paths every version serves (no filtering needed)

    def serving(self, path: str, order: tuple[str, ...]) -> tuple[str, ...]:
        """`order` without the versions that do not serve `path`."""
        if path in self.common_paths:
            return order
        return tuple(vid for vid in order if path in self.versions[vid].urls)

    def version(self, ref: str) -> VersionEntry:
        """A version by id or alias; 404 listing this model's versions and aliases if unknown."""
        entry = self.versions.get(self.aliases.get(ref, ref))
        if entry is None:
            known = ", ".join([*sorted(self.versions), *sorted(self.aliases)])
            raise ModelNotFound(
                f"model {self.name!r} has no version or alias {ref!r} (known: {known})"
            )
        return entry

    def describe(self) -> dict[str, Any]:
        weights = self.policy.weights()
        return {
            "id": self.name,
            "object": "model",
            "created": min((v.created for v in self.versions.values()), default=0),
            "owned_by": "gateway",
            "aliases": dict(self.aliases),
            "versions": [
                {**v.describe(self.aliases_of(v.id)), "weight": weights.get(v.id, 0.0)}
                for v in self.versions.values()
            ],
        }

    def aliases_of(self, vid: str) -> list[str]:
        return sorted(a for a, t in self.aliases.items() if t == vid)


@dataclass(frozen=True, slots=True)
class Registry:
    models: Mapping[str, ModelEntry]

    @classmethod
    def build(
        cls,
        cfg: GatewayConfig,
        environ: Mapping[str, str],
        revision: str = "",
        canary_weights: Mapping[str, float] | None = None,
    ) -> Registry:
        weights = canary_weights or {}
        models = {
            name: _model_entry(name, m, cfg.defaults, environ, revision, weights.get(name))
            for name, m in cfg.models.items()
        }
        return cls(models)

    def resume(self, old: Registry) -> None:
        """Carry each performance route's learned shares over from `old` (the table this one
        replaces), so a rebuild does not reset them to fair share."""
        for name, entry in self.models.items():
            before = old.models.get(name)
            policy, previous = entry.policy, before.policy if before else None
            if isinstance(policy, PerformancePolicy) and isinstance(previous, PerformancePolicy):
                policy.resume(previous)

    def model(self, name: str, visible: Callable[[str], bool] = lambda _: True) -> ModelEntry:
        """A model by public name; 404 listing the models the caller may see if unknown."""
        model = self.models.get(name)
        if model is None:
            known = ", ".join(sorted(m for m in self.models if visible(m))) or "none"
            raise ModelNotFound(f"model {name!r} does not exist (known models: {known})")
        return model

    def resolve(
        self,
        requested: str,
        header_pin: str | None,
        visible: Callable[[str], bool] = lambda _: True,
        permit: Callable[[str, bool], None] | None = None,
    ) -> Target:
        """The model and pinned version `requested` (`chat`, `chat@v2`, `chat@stable`) names,
        with `x-gateway-version` `header_pin`. `permit(model, pinned)` runs (and may raise)
        before any version or alias is looked up, so a refused caller learns none of them."""
        name, sep, ref = requested.partition("@")
        model = self.model(name, visible)
        if permit is not None:
            permit(model.name, bool(sep) or header_pin is not None)
        if sep and header_pin is not None and model.version(ref) is not model.version(header_pin):
            raise BadRequest(
                f"conflicting pins: model {requested!r} and x-gateway-version {header_pin!r}"
            )
        pin = ref if sep else header_pin
        return Target(model, model.version(pin) if pin is not None else None)

    def describe(self, visible: Callable[[str], bool] = lambda _: True) -> dict[str, Any]:
        data = [m.describe() for m in self.models.values() if visible(m.name)]
        return {"object": "list", "data": data}


def _model_entry(
    name: str,
    model: Model,
    defaults: Defaults,
    environ: Mapping[str, str],
    revision: str,
    canary_weight: float | None = None,
) -> ModelEntry:
    versions = {}
    for vid, version in model.versions.items():
        up = version.upstream
        versions[vid] = VersionEntry(
            model=name,
            id=vid,
            upstream_model=up.model,
            urls={f"/v1{ENDPOINT_PATHS[e]}": f"{up.url}{ENDPOINT_PATHS[e]}" for e in up.endpoints},
            base_url=up.url,
            api_key=environ.get(up.api_key_env) if up.api_key_env else None,
            metadata=version.metadata,
            created=_epoch(version.metadata.get("created")),
            response_headers=(
                (b"x-gateway-model", name.encode()),
                (b"x-gateway-version", vid.encode()),
                (b"x-gateway-config-revision", revision.encode()),
            ),
            max_inflight=version.max_inflight,
            forward_headers=frozenset(name.encode() for name in up.forward_headers),
            secret=(environ.get(up.api_key_env) or "").encode() if up.api_key_env else b"",
        )
    r = model.routing
    served = [frozenset(v.urls) for v in versions.values()]
    policy = build_policy(name, model, canary_weight)
    return ModelEntry(
        name=name,
        versions=versions,
        aliases=dict(model.aliases),
        policy=policy,
        timeouts=merged(defaults.timeouts, r.timeouts),
        retry=merged(defaults.retry, r.retry),
        ejection=merged(defaults.ejection, r.ejection),
        fallback=_fallback(model, policy.weights()),
        paths=frozenset().union(*served),
        common_paths=frozenset.intersection(*served),
    )


def _fallback(model: Model, weights: Mapping[str, float]) -> tuple[str, ...] | None:
    """The explicit `fallback` list without the versions that must never answer a client: a
    shadow-only version, a canary arm of weight 0 (rolled back, or promoted over), and, unless
    `retry_across_arms`, the canary's arms (each arm's failures stay on that arm)."""
    r = model.routing
    if r.fallback is None:
        return None
    idle = set()
    if r.shadow is not None and weights.get(r.shadow.version, 0.0) <= 0:
        idle.add(r.shadow.version)
    if r.canary is not None:
        for arm in (r.canary.baseline, r.canary.candidate):
            if arm is None:  # a registry canary whose versions are not read yet
                continue
            if not r.canary.retry_across_arms or weights.get(arm, 0.0) <= 0:
                idle.add(arm)
    return tuple(v for v in r.fallback if v not in idle)


def _epoch(created: Any) -> int:
    """OpenAI's `created` is a Unix time: take it from the lineage `created` date, if any."""
    if isinstance(created, int | float) and not isinstance(created, bool):
        return int(created)
    if isinstance(created, str):
        try:
            when = dt.datetime.fromisoformat(created)
        except ValueError:
            return 0
        return int(when.replace(tzinfo=when.tzinfo or dt.UTC).timestamp())
    return 0
