"""The registry's answer, made into versions: pure functions, no I/O.

`model_view` turns what MLflow returned for one registered model (the model with its aliases,
its versions, their runs and experiments) into a `ModelView`: every version with its id (the
version number as text, so `chat@3` pins it), its upstream (the `serving_url` and
`upstream_model` tags, or the model's `url_template`), its lineage (`metadata`) and, for a
version that must never be routed, the reason (not `READY`, no upstream, an upstream outside
`registry.mlflow.allowed_upstreams`). Anything MLflow returns that is not the documented shape
raises `RegistryError`, so a garbled answer never replaces a good view.

`RegistryView` is the whole picture (one `ModelView` per registry-backed model); `to_dict` and
`from_dict` are its on-disk cache form.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from gateway.config.routes import ModelRegistry, Upstream
from gateway.errors import RegistryError

READY = "READY"
OUTCOME_TAG = "gateway.rollout.outcome"
COMMIT_TAG = "mlflow.source.git.commit"
SKIPPED_RUN_TAGS = frozenset({"mlflow.log-model.history"})  # large, and not lineage


@dataclass(frozen=True, slots=True)
class RegistryVersion:
    id: str
    url: str | None
    upstream_model: str
    metadata: Mapping[str, Any]
    tags: Mapping[str, str]
    refused: str | None = None  # why it is never routed; None: routable

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "upstream_model": self.upstream_model,
            "metadata": dict(self.metadata),
            "tags": dict(self.tags),
            "refused": self.refused,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegistryVersion:
        return cls(
            str(data["id"]),
            data.get("url"),
            str(data["upstream_model"]),
            dict(data.get("metadata") or {}),
            dict(data.get("tags") or {}),
            data.get("refused"),
        )


@dataclass(frozen=True, slots=True)
class ModelView:
    model: str  # the gateway's model name
    registered: str  # the registered model's name in MLflow
    versions: tuple[RegistryVersion, ...]  # newest first
    aliases: Mapping[str, str]  # every MLflow alias → version id
    read_at: float
    warning: str | None = None  # set when this is a kept earlier view (the answer was refused)

    @property
    def routable(self) -> dict[str, RegistryVersion]:
        return {v.id: v for v in self.versions if v.refused is None}

    @property
    def refused(self) -> dict[str, str]:
        return {v.id: v.refused for v in self.versions if v.refused is not None}

    def kept(self, reason: str) -> ModelView:
        """This (earlier) view kept because a newer answer was refused; its routable versions
        say so in their metadata."""
        flag = {"registry_warning": reason}
        versions = tuple(
            v if v.refused else replace(v, metadata={**flag, **v.metadata}) for v in self.versions
        )
        return replace(self, versions=versions, warning=reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "registered": self.registered,
            "versions": [v.to_dict() for v in self.versions],
            "aliases": dict(self.aliases),
            "read_at": self.read_at,
            "warning": self.warning,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelView:
        return cls(
            str(data["model"]),
            str(data["registered"]),
            tuple(RegistryVersion.from_dict(v) for v in data["versions"]),
            {str(k): str(v) for k, v in data["aliases"].items()},
            float(data["read_at"]),
            data.get("warning"),
        )


@dataclass(frozen=True, slots=True)
class RegistryView:
    models: Mapping[str, ModelView] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"models": {name: m.to_dict() for name, m in self.models.items()}}

    def same_as(self, other: RegistryView | None) -> bool:
        """The same versions, aliases and refusals (when each was read aside)."""
        if other is None or self.models.keys() != other.models.keys():
            return False
        return all(
            replace(m, read_at=0.0) == replace(other.models[n], read_at=0.0)
            for n, m in self.models.items()
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegistryView:
        return cls({str(k): ModelView.from_dict(v) for k, v in data["models"].items()})


def allowed(url: str, entries: Iterable[str]) -> bool:
    """Is `url` inside `allowed_upstreams` (exact hosts, `*.suffix` subdomains, URL prefixes
    that end at a path boundary)?"""
    host = (urlsplit(url).hostname or "").lower()
    for entry in entries:
        if "://" in entry:
            prefix = entry.rstrip("/")
            if url == prefix or url.startswith(prefix + "/"):
                return True
        elif entry.startswith("*."):
            if host.endswith(entry[1:].lower()):
                return True
        elif host == entry.lower():
            return True
    return False


def model_view(
    model: str,
    settings: ModelRegistry,
    allowed_upstreams: tuple[str, ...],
    registered: Mapping[str, Any],
    versions: Sequence[Mapping[str, Any]],
    runs: Mapping[str, Mapping[str, Any]],
    experiments: Mapping[str, str],
    now: float,
) -> ModelView:
    """One registered model's answer → its view (raises `RegistryError` on a garbled answer)."""
    name = _text(registered, "name", "registered model")
    aliases = {
        _text(a, "alias", "alias"): _text(a, "version", "alias")
        for a in _list(registered.get("aliases"), "aliases")
    }
    out = []
    for raw in versions:
        vid = _text(raw, "version", "model version")
        run = runs.get(str(raw.get("run_id") or ""))
        out.append(_version(vid, name, settings, allowed_upstreams, raw, run, experiments))
    out.sort(key=lambda v: int(v.id) if v.id.isdigit() else -1, reverse=True)
    return ModelView(model, name, tuple(out), aliases, now)


def _version(
    vid: str,
    registered: str,
    settings: ModelRegistry,
    allowed_upstreams: tuple[str, ...],
    raw: Mapping[str, Any],
    run: Mapping[str, Any] | None,
    experiments: Mapping[str, str],
) -> RegistryVersion:
    tags = _pairs(raw.get("tags"), "model version tags")
    status = str(raw.get("status") or "")
    url = tags.get(settings.tags.serving_url)
    if not url and settings.url_template:
        url = settings.url_template.replace("{version}", vid)
    upstream_model = tags.get(settings.tags.upstream_model) or registered
    metadata = {  # the most telling first: the status page shows the first few
        **(_lineage(run, experiments) if run is not None else {}),
        "created": _iso(raw.get("creation_timestamp")),
        "description": raw.get("description") or "",
        "source": raw.get("source") or "",
        "status": status,
        "registry": "mlflow",
        "registered_model": registered,
        "version_tags": tags,
    }
    refused = _refusal(status, url, allowed_upstreams)
    if url is not None and refused is None:
        url = url.rstrip("/")
    return RegistryVersion(vid, url, upstream_model, metadata, tags, refused)


def _refusal(status: str, url: str | None, allowed_upstreams: tuple[str, ...]) -> str | None:
    if status != READY:
        return f"status is {status or 'unknown'}, not {READY}"
    if not url:
        return "no upstream: no serving_url tag and no url_template"
    try:
        Upstream._url(url)
    except ValueError as exc:
        return f"bad serving_url: {exc}"
    if not allowed(url.rstrip("/"), allowed_upstreams):
        return f"upstream {url} is outside registry.mlflow.allowed_upstreams"
    return None


def _lineage(run: Mapping[str, Any], experiments: Mapping[str, str]) -> dict[str, Any]:
    info = run.get("info") if isinstance(run.get("info"), dict) else {}
    data = run.get("data") if isinstance(run.get("data"), dict) else {}
    assert isinstance(info, dict) and isinstance(data, dict)
    tags = {
        k: v for k, v in _pairs(data.get("tags"), "run tags").items() if k not in SKIPPED_RUN_TAGS
    }
    metrics = {
        str(m.get("key")): m.get("value")
        for m in _list(data.get("metrics"), "run metrics")
        if isinstance(m, dict)
    }
    experiment_id = str(info.get("experiment_id") or "")
    return {
        "run_id": info.get("run_id") or "",
        "code_version": tags.get(COMMIT_TAG, ""),
        "run_name": info.get("run_name") or tags.get("mlflow.runName", ""),
        "experiment": experiments.get(experiment_id, ""),
        "experiment_id": experiment_id,
        "user": info.get("user_id") or tags.get("mlflow.user", ""),
        "start_time": _iso(info.get("start_time")),
        "end_time": _iso(info.get("end_time")),
        "run_status": info.get("status") or "",
        "params": _pairs(data.get("params"), "run params"),
        "metrics": metrics,
        "tags": tags,
    }


def _iso(millis: Any) -> str | None:
    """MLflow's epoch milliseconds (a number or numeric text) as ISO-8601 UTC."""
    try:
        value = int(millis)
    except (TypeError, ValueError):
        return None
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC).isoformat()


def _text(obj: Any, key: str, what: str) -> str:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
        raise RegistryError(f"the registry's {what} has no {key!r}")
    return str(value)


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RegistryError(f"the registry's {what} is not a list")
    return value


def _pairs(value: Any, what: str) -> dict[str, str]:
    """MLflow's `[{key, value}]` lists as a dict."""
    out = {}
    for item in _list(value, what):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise RegistryError(f"the registry's {what} are not key/value pairs")
        out[item["key"]] = str(item.get("value", ""))
    return out
