"""Layering the shared control state over the file config: one function both paths call.

The file config is the base; each model's stored control value (`gateway.control.store`) adds
operator overrides and the canary's progress:

- `weights` replace `routing.weights` (weighted and performance strategies);
- `aliases` are merged over the file's aliases (a promotion writes the promote alias here);
- `canary` (a `CanaryState.to_dict()`) sets the canary's current weight: the step's weight while
  progressing or paused, 100 after promotion, 0 after rollback. A stored canary whose baseline or
  candidate differ from the file's (a new rollout was configured) is ignored.

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
            if state is not None and model.routing.canary is not None:
                weights[name] = current_weight(canary_settings(model.routing.canary), state)
        models[name] = model
    return cfg.model_copy(update={"models": models}), weights


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
