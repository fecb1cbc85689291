"""After the shared control state was lost: what a replica writes back from its memory.

The control state lives in Redis. A restart without persistence, a flush or a failover to an
empty replica loses it; a gateway that then read "nothing stored" would drop every override,
undo promotions and rollbacks, and restart each canary from step 0. Instead every replica
remembers the state it applied and the store's epoch (`ControlStore.epoch`); when the epoch
changes, or a model's value it remembers is gone, it re-writes what it remembers
(`restored`): overrides and finished rollouts as they were, and every canary still in progress
held **paused with reason `state_lost`** at its last known step and weight, for an operator to
resume, roll back or promote (docs/operations.md). Nothing advances on its own afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gateway.canary import judge
from gateway.canary.state import TERMINAL, DecisionRecord
from gateway.config.canary import canary_settings
from gateway.config.routes import Model
from gateway.control.store import Value
from gateway.runtime.overrides import stored_canary

Record = dict[str, Any]


def needs_restore(
    model: Model, remembered: Mapping[str, Any], stored: Value | None, epoch_changed: bool
) -> bool:
    """Whether `stored` lost what this replica remembers: nothing stored; an older generation
    than the one applied here (generations only grow: the store went back in time, e.g. an old
    snapshot); or, in a new epoch, a canary behind the remembered one (a replica that started
    on the empty store began anew)."""
    if stored is None or int(stored.get("generation", 0)) < int(remembered.get("generation", 0)):
        return True
    if not epoch_changed:
        return False
    mine, theirs = stored_canary(model, remembered), stored_canary(model, stored)
    return mine is not None and (theirs is None or theirs.generation < mine.generation)


def restored(
    model: Model, remembered: Mapping[str, Any], now: float
) -> tuple[Value, dict[str, Any]]:
    """The value to write back, and the history record that says so."""
    value: Value = copy.deepcopy(dict(remembered))
    value.pop("generation", None)
    state = stored_canary(model, remembered)
    canary = model.routing.canary
    message = "shared control state was lost; re-written from this replica's memory"
    if state is None or canary is None:
        return value, {"time": now, "action": "restore", "rule": "state_lost", "message": message}
    settings = canary_settings(canary)
    new = state
    if state.status not in TERMINAL:
        new = replace(
            state, status="paused", pause_reason="state_lost", generation=state.generation + 1
        )
        weight = judge.current_weight(settings, state)
        message += f": canary held paused at step {state.step} ({weight:g}%)"
    else:
        message += f": canary stays {state.status}"
    value["canary"] = new.to_dict()
    record = DecisionRecord(
        time=now,
        generation=new.generation,
        action="restore",
        rule="state_lost",
        status=new.status,
        step_from=state.step,
        step_to=new.step,
        weight_from=judge.current_weight(settings, state),
        weight_to=judge.current_weight(settings, new),
        message=message,
        snapshot=judge.snapshot(settings, state, now),
    )
    return value, record.to_dict()
