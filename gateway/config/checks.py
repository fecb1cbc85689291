"""Rules that relate config fields to each other: names, references, weights, environment.

Owns: names (models, versions, aliases) are well-formed and distinct, weights and aliases name
known versions, weights are not all zero, and every `api_key_env` is set in the environment;
for `strategy: performance`, that the interchangeable versions exist, the ceilings (`weights`, in
percent) are feasible and the exploration floors fit under them; an admin listener has the
token it needs and a port of its own; `metrics.require` names known keys or a configured token.
They run on the raw YAML data, defensively, so that they report alongside type errors and
`gateway validate` lists every problem in one pass. Each rule yields `(path, message)`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from gateway.canary.validate import validate_canary
from gateway.config.base import WEIGHT_RULE, check_http_url, check_name, weight_ok
from gateway.config.canary import canary_settings
from gateway.config.schema import MLFLOW_URI_ENV, GatewayConfig
from gateway.config.yamlsource import Path

Problem = tuple[Path, str]


def check_config(
    data: Mapping[str, Any], environ: Mapping[str, str], resolved: bool = False
) -> Iterator[Problem]:
    """Every cross-field problem of raw config `data`. A registry-backed model's references
    to versions are checked only once `resolved` (merged with the registry's view)."""
    models = data.get("models")
    if not isinstance(models, dict):
        return
    yield from _check_keys(_dict(data.get("auth")).get("keys"), models)
    yield from _check_registry(data, models, environ)
    for name, model in models.items():
        base: Path = ("models", name)
        yield from _name(base, str(name), "model")
        if isinstance(model, dict):
            deferred = not resolved and isinstance(model.get("registry"), dict)
            yield from _check_model(base, model, environ, deferred)


def _check_registry(
    data: Mapping[str, Any], models: dict[Any, Any], environ: Mapping[str, str]
) -> Iterator[Problem]:
    """A registry-backed model needs `registry.mlflow`, which needs a server and its token."""
    mlflow = _dict(_dict(data.get("registry")).get("mlflow"))
    if not mlflow:
        for name, model in models.items():
            if isinstance(model, dict) and model.get("registry") is not None:
                yield ("models", name, "registry"), "needs a top-level registry.mlflow block"
        return
    path: Path = ("registry", "mlflow")
    from_env = environ.get(MLFLOW_URI_ENV)
    if not mlflow.get("tracking_uri") and not from_env:
        yield (*path, "tracking_uri"), f"not set, and {MLFLOW_URI_ENV} is not set either"
    elif not mlflow.get("tracking_uri") and from_env:
        try:
            check_http_url(from_env, MLFLOW_URI_ENV)
        except ValueError as exc:
            yield (*path, "tracking_uri"), str(exc)
    env = mlflow.get("token_env")
    if isinstance(env, str) and not environ.get(env):
        yield (*path, "token_env"), f"environment variable {env} is not set"


class _Deferred(dict[Any, Any]):
    """The versions of a registry-backed model before the registry is read: any id may exist."""

    def __contains__(self, key: object) -> bool:
        return True


def _name(path: Path, name: str, what: str) -> Iterator[Problem]:
    try:
        check_name(name, what)
    except ValueError as exc:
        yield path, str(exc)


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _check_model(
    base: Path, model: dict[str, Any], environ: Mapping[str, str], deferred: bool
) -> Iterator[Problem]:
    declared = _dict(model.get("versions"))
    versions = _Deferred(declared) if deferred else declared
    known = ", ".join(sorted(map(str, versions)))
    env = _dict(model.get("registry")).get("api_key_env")
    if isinstance(env, str) and not environ.get(env):
        yield (*base, "registry", "api_key_env"), f"environment variable {env} is not set"
    for vid, version in versions.items():
        vpath = (*base, "versions", vid)
        yield from _name(vpath, str(vid), "version")
        env = _dict(_dict(version).get("upstream")).get("api_key_env")
        if isinstance(env, str) and not environ.get(env):
            yield (*vpath, "upstream", "api_key_env"), f"environment variable {env} is not set"
    aliases = _dict(model.get("aliases"))
    for alias, target in aliases.items():
        apath = (*base, "aliases", alias)
        yield from _name(apath, str(alias), "alias")
        if alias in declared:
            yield apath, f"alias {alias!r} has the same name as a version"
        if isinstance(target, str) and target not in versions:
            yield apath, f"unknown version {target!r} (known: {known})"
    routing = _dict(model.get("routing"))
    follow = routing.get("follow_alias")
    if isinstance(follow, str) and not deferred and follow not in aliases:
        yield (*base, "routing", "follow_alias"), f"unknown alias {follow!r}"
    yield from _check_routing_refs((*base, "routing"), routing, versions, known)
    fallback = routing.get("fallback")
    for i, vid in enumerate(fallback if isinstance(fallback, list) else []):
        if isinstance(vid, str) and vid not in versions:
            yield (*base, "routing", "fallback", i), f"unknown version {vid!r} (known: {known})"
    wpath = (*base, "routing", "weights")
    if routing.get("strategy") == "performance":
        yield from _check_performance((*base, "routing"), routing, versions, known)
        return
    if "performance" in routing:
        yield (*base, "routing", "performance"), "only allowed with strategy: performance"
    if "weights" not in routing:
        canary = routing.get("strategy") == "canary"  # the canary owns the split
        routed = canary or routing.get("follow_alias") is not None
        if len(versions) > 1 and "stable" not in aliases and not routed and not deferred:
            yield wpath, "required when a model has several versions and no 'stable' alias"
        return
    yield from _check_weights(wpath, routing["weights"], versions, known)


def _check_weights(
    wpath: Path, weights: Any, versions: dict[Any, Any], known: str
) -> Iterator[Problem]:
    if not isinstance(weights, dict):
        return
    if not weights:
        yield wpath, "empty: give at least one version a positive weight"
        return
    numbers = []
    for vid, weight in weights.items():
        if vid not in versions:
            yield (*wpath, vid), f"unknown version {vid!r} (known: {known})"
        if isinstance(weight, int | float) and not isinstance(weight, bool):
            if not weight_ok(weight):
                yield (*wpath, vid), f"weight {WEIGHT_RULE}, got {weight}"
            numbers.append(weight)
    if numbers and len(numbers) == len(weights) and all(w == 0 for w in numbers):
        yield wpath, "weights are all zero: no version would get traffic"


def _check_keys(keys: Any, models: dict[Any, Any]) -> Iterator[Problem]:
    ids: set[str] = set()
    digests: set[str] = set()
    for i, key in enumerate(keys if isinstance(keys, list) else []):
        key = _dict(key)
        path: Path = ("auth", "keys", i)
        if key.get("id") in ids:
            yield (*path, "id"), f"duplicate key id {key.get('id')!r}"
        if key.get("sha256") in digests:
            yield (*path, "sha256"), "the same key hash appears twice"
        ids.add(str(key.get("id")))
        digests.add(str(key.get("sha256")))
        allowed = key.get("models")
        for j, name in enumerate(allowed if isinstance(allowed, list) else []):
            if name != "*" and name not in models:
                yield (*path, "models", j), f"unknown model {name!r}"


def _check_routing_refs(
    rpath: Path, routing: dict[str, Any], versions: dict[Any, Any], known: str
) -> Iterator[Problem]:
    """Versions named by the canary, rules and shadow exist; a canary strategy has a canary."""

    def unknown(path: Path, vid: Any) -> Iterator[Problem]:
        if isinstance(vid, str) and vid not in versions:
            yield path, f"unknown version {vid!r} (known: {known})"

    canary = routing.get("canary")
    if routing.get("strategy") == "canary" and not isinstance(canary, dict):
        yield (*rpath, "strategy"), "strategy 'canary' needs a routing.canary block"
    if isinstance(canary, dict):
        for arm in ("baseline", "candidate"):
            yield from unknown((*rpath, "canary", arm), canary.get(arm))
        if canary.get("baseline") is not None and canary.get("baseline") == canary.get("candidate"):
            yield (*rpath, "canary", "candidate"), "the candidate must differ from the baseline"
    rules = routing.get("rules")
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        yield from unknown((*rpath, "rules", i, "version"), _dict(rule).get("version"))
    yield from unknown((*rpath, "shadow", "version"), _dict(routing.get("shadow")).get("version"))


def _check_metrics_access(cfg: GatewayConfig) -> Iterator[Problem]:
    """`metrics.require` has what it needs: key ids of configured keys, or the admin token."""
    access = cfg.metrics
    if access.require == "admin" and not cfg.admin.token_env:
        yield ("metrics", "require"), "`admin` needs admin.token_env"
    if access.require == "key" and not access.key_ids:
        yield ("metrics", "key_ids"), "`require: key` needs the ids of the keys that may scrape"
    known = {k.id for k in cfg.auth.keys} if cfg.auth else set()
    for i, kid in enumerate(access.key_ids):
        if kid not in known:
            yield ("metrics", "key_ids", i), f"unknown key id {kid!r}"


def check_typed(cfg: GatewayConfig) -> Iterator[Problem]:
    """Rules that need the typed config: a canary must be able to reach a decision; a separate
    admin listener needs the admin token and a port of its own; `metrics.require` has what it
    names."""
    admin = cfg.admin.listen
    if admin is not None and not cfg.admin.token_env:
        yield ("admin", "listen"), "a separate admin listener needs admin.token_env"
    if admin is not None and admin.port == cfg.listen.port:
        yield ("admin", "listen", "port"), f"must differ from listen.port ({cfg.listen.port})"
    yield from _check_metrics_access(cfg)
    for name, model in cfg.models.items():
        canary = model.routing.canary
        if canary is None or canary.baseline is None:  # from_registry: checked once resolved
            continue
        base: Path = ("models", name, "routing", "canary")
        settings = canary_settings(canary)
        for problem in validate_canary(settings, canary.expected_rps, canary.expected_error_rate):
            where, _, message = problem.partition(": ")
            yield (*base, *_canary_path(where)), message


def _canary_path(where: str) -> Path:
    """`steps[1].weight` → ("steps", 1, "weight")."""
    out: list[str | int] = []
    for part in where.replace("]", "").split("."):
        name, _, index = part.partition("[")
        if name:
            out.append(name)
        if index.isdigit():
            out.append(int(index))
    return tuple(out)


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _check_performance(
    rpath: Path, routing: dict[str, Any], versions: dict[Any, Any], known: str
) -> Iterator[Problem]:
    settings = _dict(routing.get("performance"))
    pool = settings.get("versions")
    ppath = (*rpath, "performance", "versions")
    if not isinstance(pool, list):
        pool = list(versions)
    elif not pool:
        yield ppath, "empty: list the interchangeable versions, or leave it out for all"
    for index, vid in enumerate(pool):
        if vid not in versions:
            yield (*ppath, index), f"unknown version {vid!r} (known: {known})"
        elif pool.index(vid) != index:
            yield (*ppath, index), f"version {vid!r} listed twice"
    ceilings = _dict(routing.get("weights"))
    wpath = (*rpath, "weights")
    for vid, value in ceilings.items():
        number = _number(value)
        if vid not in versions:
            yield (*wpath, vid), f"unknown version {vid!r} (known: {known})"
        elif number is not None and not 0 <= number <= 100:
            yield (*wpath, vid), f"a ceiling is a percentage 0-100, got {value}"
    yield from _check_shares(rpath, pool, ceilings, _number(settings.get("min_share", 0.05)))


def _check_shares(
    rpath: Path, pool: list[Any], ceilings: dict[Any, Any], min_share: float | None
) -> Iterator[Problem]:
    limits = {vid: _number(ceilings.get(vid, 100)) for vid in pool}
    if any(v is None for v in limits.values()):
        return
    live = {vid: float(v or 0) / 100 for vid, v in limits.items() if v}
    if pool and not live:
        yield (*rpath, "weights"), "every interchangeable version has a ceiling of 0"
    elif live and sum(live.values()) < 1 - 1e-9:
        yield (*rpath, "weights"), "ceilings of the interchangeable versions sum below 100"
    if min_share is None or not live:
        return
    if min_share * len(live) > 1 + 1e-9:
        yield (
            (*rpath, "performance", "min_share"),
            (f"min_share {min_share:g} × {len(live)} versions exceeds all traffic"),
        )
    for vid, ceiling in live.items():
        if ceiling < min_share:
            yield (*rpath, "weights", vid), f"ceiling {ceiling * 100:g} is below min_share"
