"""Operator overrides in the stored control value: set, clear and expire, each with its record.

Pure functions over one model's stored value (`gateway.control.store`). Every override carries
its provenance under `meta` (read by `gateway.runtime.overrides.describe`):

    meta.weights          {"source", "at", "expires_at", "yaml"}
    meta.aliases.<name>   the same, per alias

`source` says who set it (`admin` for the API, `cli:<user>` from the CLI, `canary` for the
promote alias a promotion writes, `revert`); `at` and `expires_at` are Unix times (`expires_at`
null: until cleared); `yaml` is what the file said when it was set. An expired override is
cleared by the control plane like `weights clear` / `alias clear` would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.control.store import Value

Meta = dict[str, Any]


def provenance(source: str, now: float, ttl_s: float | None, yaml: Any) -> Meta:
    return {
        "source": source,
        "at": round(now, 3),
        "expires_at": None if ttl_s is None else round(now + ttl_s, 3),
        "yaml": yaml,
    }


def set_weights(value: Value, weights: Mapping[str, float], meta: Meta) -> Value:
    value["weights"] = dict(weights)
    value["meta"] = {**(value.get("meta") or {}), "weights": meta}
    return value


def clear_weights(value: Value) -> Value:
    value["weights"] = None
    meta = dict(value.get("meta") or {})
    meta.pop("weights", None)
    value["meta"] = meta
    return value


def set_alias(value: Value, alias: str, target: str, meta: Meta) -> Value:
    value["aliases"] = {**(value.get("aliases") or {}), alias: target}
    meta_all = dict(value.get("meta") or {})
    meta_all["aliases"] = {**(meta_all.get("aliases") or {}), alias: meta}
    value["meta"] = meta_all
    return value


def clear_alias(value: Value, alias: str) -> Value:
    value["aliases"] = {a: v for a, v in (value.get("aliases") or {}).items() if a != alias}
    meta_all = dict(value.get("meta") or {})
    meta_all["aliases"] = {a: m for a, m in (meta_all.get("aliases") or {}).items() if a != alias}
    value["meta"] = meta_all
    return value


def has_alias(value: Value | None, alias: str) -> bool:
    return bool(value) and alias in ((value or {}).get("aliases") or {})


def expired(value: Mapping[str, Any], now: float) -> list[str]:
    """The overrides of `value` past their expiry: `weights` and/or `aliases.<name>`."""
    meta = value.get("meta") or {}
    out = []
    if value.get("weights") and _past(meta.get("weights"), now):
        out.append("weights")
    aliases = meta.get("aliases") or {}
    out += [f"aliases.{a}" for a in (value.get("aliases") or {}) if _past(aliases.get(a), now)]
    return out


def clear_expired(value: Value, keys: list[str]) -> Value:
    for key in keys:
        value = clear_weights(value) if key == "weights" else clear_alias(value, key[8:])
    return value


def _past(meta: Mapping[str, Any] | None, now: float) -> bool:
    at = (meta or {}).get("expires_at")
    return isinstance(at, int | float) and now >= at
