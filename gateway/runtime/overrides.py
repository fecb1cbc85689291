"""Layering the shared control state over the file config: one function both paths call.

The file config is the base; each model's stored control value (`gateway.control.store`) adds
operator overrides and the canary's progress:

- `weights` replace `routing.weights` (weighted and performance strategies);
- `aliases` are merged over the file's aliases (a promotion writes the promote alias here);
- `canary` (a `CanaryState.to_dict()`) sets the canary's current weight: the step's weight while
  progressing or paused, 0 after rollback. After a promotion the default route follows the
  promote alias (`stable`): the candidate as promoted, or whatever an operator (or `canary
  revert`) points the alias at since. A stored canary whose baseline or candidate differ from the
  file's (a new rollout was configured) is ignored;
- `meta` says, per override (`weights`, `aliases.<name>`), who set it (`source`), when (`at`), until
  when (`expires_at`, or null) and what the file said then (`yaml`). The control plane clears an
  expired override; `shadowed` tells a reload which overrides hide a value the file changed.

`layered` is pure: start-up, hot reload and the apply loop all build their `Runtime` through it,
so a file reload keeps the current overrides and an override never loses the file's settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.canary.judge import current_weight
from gateway.canary.state import CanaryState
from gateway.config.canary import Canary, canary_settings
from gateway.config.routes import Model
from gateway.config.schema import GatewayConfig

Overrides = Mapping[str, Mapping[str, Any]]  # model → stored control value


def canary_id(canary: Canary) -> str:
    """The identity of one rollout: a stored state applies only to the same pair of versions."""
    return f"{canary.baseline}->{canary.candidate}"


def stored_canary(model: Model, value: Mapping[str, Any] | None) -> CanaryState | None:
    """The stored canary state of this model's configured rollout, if any."""
    canary = model.routing.canary
    if canary is None or not value or not value.get("canary"):
        return None
    if value.get("canary_id") != canary_id(canary):
        return None
    return CanaryState.from_dict(value["canary"])


def layered(cfg: GatewayConfig, overrides: Overrides) -> tuple[GatewayConfig, dict[str, float]]:
    """The config routing should use, and each canary model's current candidate weight."""
    models: dict[str, Model] = {}
    weights: dict[str, float] = {}
    for name, model in cfg.models.items():
        value = overrides.get(name)
        if value:
            model = _model(model, value)
            state = stored_canary(model, value)
            canary = model.routing.canary
            if state is not None and canary is not None:
                weights[name] = current_weight(canary_settings(canary), state)
                if state.status == "promoted":
                    model, weights[name] = _promoted(model, canary)
        models[name] = model
    return cfg.model_copy(update={"models": models}), weights


def _promoted(model: Model, canary: Canary) -> tuple[Model, float]:
    """A promoted canary's default route: the version its promote alias points at now."""
    target = model.aliases.get(canary.promote_alias, canary.candidate)
    if target in (canary.candidate, canary.baseline):
        return model, 100.0 if target == canary.candidate else 0.0
    routing = model.routing.model_copy(update={"strategy": "weighted", "weights": {target: 1.0}})
    return model.model_copy(update={"routing": routing}), 0.0


def shadowed(old: GatewayConfig, new: GatewayConfig, overrides: Overrides) -> list[str]:
    """Notes for a reload: overrides that hide a value the file just changed (so the change
    does not take effect until the override is cleared or expires)."""
    notes = []
    for name, value in overrides.items():
        before, after = old.models.get(name), new.models.get(name)
        if before is None or after is None or not value:
            continue
        meta = value.get("meta") or {}
        if value.get("weights") and before.routing.weights != after.routing.weights:
            notes.append(
                f"models.{name}.routing.weights changed in the file, but the override "
                f"{_who(meta.get('weights'))}hides it (gateway weights clear --model {name})"
            )
        for alias, target in (value.get("aliases") or {}).items():
            if before.aliases.get(alias) != after.aliases.get(alias):
                notes.append(
                    f"models.{name}.aliases.{alias} changed in the file, but the override "
                    f"-> {target} {_who((meta.get('aliases') or {}).get(alias))}hides it "
                    f"(gateway alias clear --model {name} {alias})"
                )
    return notes


def _who(meta: Mapping[str, Any] | None) -> str:
    if not meta:
        return ""
    return f"set by {meta.get('source', '?')} at {meta.get('at', '?')} "


def describe(model: Model, value: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every override of `model`: its value, where it came from, when, until when, and the file
    value it hides now."""
    value = value or {}
    meta = value.get("meta") or {}
    out: dict[str, Any] = {"weights": None, "aliases": {}}
    if value.get("weights"):
        file_weights = model.routing.weights
        out["weights"] = {
            **_meta(meta.get("weights")),
            "value": value["weights"],
            "yaml": dict(file_weights) if file_weights is not None else None,
        }
    alias_meta = meta.get("aliases") or {}
    for alias, target in (value.get("aliases") or {}).items():
        out["aliases"][alias] = {
            **_meta(alias_meta.get(alias)),
            "value": target,
            "yaml": model.aliases.get(alias),
        }
    return out


def _meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    meta = meta or {}
    out = {k: meta.get(k) for k in ("source", "at", "expires_at")}
    out["yaml_when_set"] = meta.get("yaml")
    return out


def _model(model: Model, value: Mapping[str, Any]) -> Model:
    update: dict[str, Any] = {}
    known = model.versions
    aliases = {a: v for a, v in (value.get("aliases") or {}).items() if v in known}
    if aliases:
        update["aliases"] = {**model.aliases, **aliases}
    new_weights = value.get("weights")
    if new_weights and all(v in known for v in new_weights):
        routing = model.routing.model_copy(
            update={"weights": {v: float(w) for v, w in new_weights.items()}}
        )
        update["routing"] = routing
    return model.model_copy(update=update) if update else model
