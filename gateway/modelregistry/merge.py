"""The config routing uses: the file config with the registry's view merged in (pure).

`resolve(cfg, view)` returns the effective config for every registry-backed model:

- versions: the view's routable versions, plus the YAML ones (the same id in both: YAML's
  upstream, and its `metadata` keys over the registry's lineage);
- aliases: every registry alias naming a routable version, with YAML aliases over them;
- `routing.follow_alias`: the default route becomes all traffic to the alias's target;
- `routing.canary.from_registry`: baseline and candidate become the targets of the two aliases
  (the baseline alias is the promote alias); no rollout while the candidate alias is unset,
  names the baseline, or names a version tagged `gateway.rollout.outcome=rolled_back`, and then
  all traffic goes to the baseline;
- otherwise, with no YAML `weights` and several versions: the newest routable version.

A registry-backed model the registry has not answered for yet (and no cache had) is left out
until it does, and so is a model left with no version (its name answers 404; `/readyz` waits
while no model remains). The result passes the same cross-checks as a file (`check_config` with
`resolved`, `check_typed`); a problem raises `ConfigError`, so an answer that cannot be routed
is refused like a bad config file and the last good view stays.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from gateway.config.checks import check_config, check_typed
from gateway.config.routes import Model, Routing, Upstream, Version
from gateway.config.schema import GatewayConfig
from gateway.config.yamlsource import format_path
from gateway.errors import ConfigError
from gateway.modelregistry.view import OUTCOME_TAG, ModelView, RegistryView

ROLLED_BACK = "rolled_back"


def resolve(
    cfg: GatewayConfig, view: RegistryView | None, environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """The effective config (unchanged when no model is registry-backed)."""
    if not any(m.registry is not None for m in cfg.models.values()):
        return cfg
    models = {}
    for name, model in cfg.models.items():
        if model.registry is not None:
            mv = view.models.get(name) if view else None
            if mv is None:
                continue  # not read yet (nor cached): served once the registry answers
            model = _merged(model, mv)
        if model.versions:
            models[name] = model
    out = cfg.model_copy(update={"models": models})
    env = os.environ if environ is None else environ
    problems = [
        f"{format_path(path)}: {message}"
        for path, message in [
            *check_config(out.model_dump(mode="json", exclude_none=True), env, resolved=True),
            *check_typed(out),
        ]
    ]
    if problems:
        raise ConfigError(problems)
    return out


def _merged(model: Model, mv: ModelView) -> Model:
    versions: dict[str, Version] = {}
    registry = model.registry
    assert registry is not None
    for rv in mv.routable.values():
        assert rv.url is not None
        upstream = Upstream(url=rv.url, model=rv.upstream_model, api_key_env=registry.api_key_env)
        versions[rv.id] = Version(upstream=upstream, metadata=dict(rv.metadata))
    for vid, version in model.versions.items():
        lineage = versions[vid].metadata if vid in versions else {}
        versions[vid] = version.model_copy(update={"metadata": {**lineage, **version.metadata}})
    aliases = {a: v for a, v in mv.aliases.items() if v in versions}
    aliases = {a: v for a, v in {**aliases, **model.aliases}.items() if a not in versions}
    newest = next(iter(mv.routable), None)
    routing = _routing(model.routing, versions, aliases, newest, mv)
    return model.model_copy(update={"versions": versions, "aliases": aliases, "routing": routing})


def _routing(
    routing: Routing,
    versions: dict[str, Version],
    aliases: dict[str, str],
    newest: str | None,
    mv: ModelView,
) -> Routing:
    canary = routing.canary
    if canary is not None and canary.from_registry is not None:
        arms = canary.from_registry
        baseline = aliases.get(arms.baseline_alias)
        candidate = aliases.get(arms.candidate_alias)
        if baseline and candidate and candidate != baseline and not _rolled_back(mv, candidate):
            update = {"baseline": baseline, "candidate": candidate, "from_registry": None}
            update["promote_alias"] = arms.baseline_alias
            return routing.model_copy(update={"canary": canary.model_copy(update=update)})
        target = baseline or newest
        plain = routing.model_copy(update={"strategy": "weighted", "canary": None})
        return _only(plain, versions, target)
    if routing.follow_alias is not None:
        return _only(routing, versions, aliases.get(routing.follow_alias) or newest)
    several = len(versions) > 1 and "stable" not in aliases
    if routing.strategy == "weighted" and routing.weights is None and several:
        return _only(routing, versions, newest)
    return routing


def _only(routing: Routing, versions: dict[str, Version], target: str | None) -> Routing:
    """All default traffic to `target` (the others stay registered at weight 0: pinnable, idle)."""
    if target is None or target not in versions:
        target = next(iter(versions), None)
    weights = {vid: 1.0 if vid == target else 0.0 for vid in versions}
    return routing.model_copy(update={"weights": weights or None, "follow_alias": None})


def _rolled_back(mv: ModelView, vid: str) -> bool:
    return any(v.id == vid and v.tags.get(OUTCOME_TAG) == ROLLED_BACK for v in mv.versions)
