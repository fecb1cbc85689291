"""Admin routes of the control plane: weights, aliases, and canary status and actions.

    GET    /admin/models/{model}/overrides         every override: value, source, when, expiry,
                                                   and the file value it hides
    PUT    /admin/models/{model}/weights           {"weights": {"v1": 90, "v2": 10},
                                                    "ttl_s"?, "source"?, "generation"?}
    DELETE /admin/models/{model}/weights           back to the file's weights
    PUT    /admin/models/{model}/aliases/{alias}   {"version": "v2", "ttl_s"?, "source"?,
                                                    "generation"?}
    DELETE /admin/models/{model}/aliases/{alias}   back to the file's alias (if any)
    GET    /admin/models/{model}/canary            state, step, weight, snapshot, rollout, history
    POST   /admin/models/{model}/canary/{action}   pause | resume | promote | rollback | revert |
                                                   restart

`source` says who set an override (default `admin`; the CLI sends `cli:<user>`); `ttl_s` makes
it expire (the control plane clears it then). An override shows what it hides in
`GET .../overrides`, and a reload notes the overrides that hide a value the file changed.

Writes are validated like the config (known versions, finite weights from 0 to 1e6, not all
zero, alias names well-formed and distinct from versions: 422 with `problems`), then
compare-and-set on the model's control generation (the body's `generation` if given, else the
current one): of two concurrent writers one gets 200 and the other 409. Every change is applied
on this replica at once and on the others within one poll, and writes one audit event line
(never the token).
Unknown models are 404; the store being unreachable is 503.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.config.base import MAX_WEIGHT, NAME_RE, WEIGHT_RULE, weight_ok
from gateway.control.controller import CanaryController
from gateway.control.overrides import clear_alias as clear_alias_in
from gateway.control.overrides import clear_weights as clear_weights_in
from gateway.control.overrides import has_alias, provenance
from gateway.control.overrides import set_alias as set_alias_in
from gateway.control.overrides import set_weights as set_weights_in
from gateway.control.plane import ControlPlane
from gateway.control.service import Control
from gateway.errors import BadRequest, NotFound
from gateway.observability.logs import event
from gateway.runtime.current import Current
from gateway.runtime.overrides import describe
from gateway.web.openapi import ERROR

log = logging.getLogger("gateway.admin")
ERR: dict[str, Any] = {"content": {"application/json": {"schema": ERROR}}}
PROBLEMS: dict[str, Any] = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error", "problems"],
                "properties": {
                    "error": ERROR["properties"]["error"],  # type: ignore[index]
                    "problems": {"type": "array", "items": {"type": "string"}},
                },
            }
        }
    }
}
WRITE: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown model", **ERR},
    409: {"description": "Stale generation or a concurrent write won", **ERR},
    422: {"description": "Invalid body: every problem listed", **PROBLEMS},
    503: {"description": "The control store is unavailable", **ERR},
}
CANARY: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown model", **ERR},
    409: {"description": "No canary, a transition its state does not allow, or a race", **ERR},
    503: {"description": "The control store is unavailable", **ERR},
}
GENERATION = {"type": "integer", "minimum": 0, "description": "expected control generation"}
TTL = {"type": "number", "exclusiveMinimum": 0, "description": "expire after this many seconds"}
SOURCE = {"type": "string", "maxLength": 64, "description": "who sets it (default admin)"}
WEIGHTS_BODY = {
    "type": "object",
    "required": ["weights"],
    "properties": {
        "weights": {
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": 0, "maximum": MAX_WEIGHT},
        },
        "generation": GENERATION,
        "ttl_s": TTL,
        "source": SOURCE,
    },
}
ALIAS_BODY = {
    "type": "object",
    "required": ["version"],
    "properties": {
        "version": {"type": "string"},
        "generation": GENERATION,
        "ttl_s": TTL,
        "source": SOURCE,
    },
}
SOURCE_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _invalid(problems: list[str]) -> JSONResponse:
    message = "; ".join(problems)
    error = {
        "message": message,
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_change",
    }
    return JSONResponse({"error": error, "problems": problems}, status_code=422)


async def _json(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def _generation(data: dict[str, Any], problems: list[str]) -> int | None:
    value = data.get("generation")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        problems.append("generation: must be a non-negative integer")
        return None
    return value


def _provenance(data: dict[str, Any], yaml: Any, now: float, problems: list[str]) -> dict[str, Any]:
    """Who set an override, when, until when, and the file value it hides (see
    `gateway.control.overrides`)."""
    ttl = data.get("ttl_s")
    if ttl is not None and (
        not isinstance(ttl, int | float) or isinstance(ttl, bool) or not 0 < ttl < 10**9
    ):
        problems.append("ttl_s: must be a positive number of seconds")
        ttl = None
    source = data.get("source", "admin")
    if not isinstance(source, str) or not SOURCE_RE.match(source):
        problems.append("source: 1-64 letters, digits or _.:@-")
        source = "admin"
    return provenance(source, now, None if ttl is None else float(ttl), yaml)


def weight_problems(model: str, versions: Any, weights: Any, strategy: str) -> list[str]:
    """What is wrong with a weights override, in the config's words (empty: valid)."""
    path = f"models.{model}.routing.weights"
    if not isinstance(weights, dict) or not weights:
        return [f"{path}: must be a non-empty object of version: weight"]
    problems = []
    if strategy == "canary":
        problems.append(f"{path}: the canary sets this model's weights; use the canary actions")
    for vid, w in weights.items():
        if vid not in versions:
            problems.append(f"{path}.{vid}: unknown version {vid!r}")
        if not weight_ok(w):
            problems.append(f"{path}.{vid}: {WEIGHT_RULE}")
    if not problems and sum(weights.values()) <= 0:
        problems.append(f"{path}: at least one weight must be positive")
    return problems


def add_control_routes(router: APIRouter, current: Current, control: Control) -> None:
    """Register the control routes on the (token-guarded) admin router."""
    _override_routes(router, current, control.plane)
    _canary_routes(router, current, control.controller)


def _override_routes(router: APIRouter, current: Current, plane: ControlPlane) -> None:
    @router.get(
        "/models/{model}/overrides",
        summary="Every override of the model: value, source, when, expiry, the file value hidden",
        responses={404: {"description": "Unknown model", **ERR}, 503: WRITE[503]},
    )
    async def get_overrides(model: str) -> JSONResponse:
        current.runtime.registry.model(model)
        generation, value = await plane.store.get(model)
        described = describe(current.runtime.config.models[model], value)
        return JSONResponse({"model": model, "generation": generation, **described})

    @router.put(
        "/models/{model}/weights",
        summary="Override the routing weights (CAS on the generation; all replicas)",
        responses=WRITE,
        openapi_extra=_body(WEIGHTS_BODY),
    )
    async def set_weights(model: str, request: Request) -> JSONResponse:
        entry = current.runtime.registry.model(model)
        data = await _json(request)
        weights = data.get("weights")
        file_model = current.runtime.config.models[model]
        problems = weight_problems(model, entry.versions, weights, file_model.routing.strategy)
        expected = _generation(data, problems)
        yaml = dict(file_model.routing.weights) if file_model.routing.weights else None
        meta = _provenance(data, yaml, plane.wall(), problems)
        if problems or not isinstance(weights, dict):
            return _invalid(problems)
        clean = {v: float(w) for v, w in weights.items()}
        value = await plane.update(model, lambda v: set_weights_in(v, clean, meta), expected)
        before = entry.policy.weights()
        event(log, "admin_weights", f"weights of {model} set", model=model, weights=clean,
              before=before, source=meta["source"], expires_at=meta["expires_at"],
              generation=value["generation"])  # fmt: skip
        body = {"model": model, "weights": clean, "generation": value["generation"]}
        return JSONResponse({**body, "override": meta})

    @router.delete(
        "/models/{model}/weights",
        summary="Remove the weights override: the file's weights apply again",
        responses=WRITE,
    )
    async def clear_weights(model: str, request: Request) -> JSONResponse:
        current.runtime.registry.model(model)
        expected = await _expected(request)
        value = await plane.update(model, clear_weights_in, expected)
        event(log, "admin_weights_clear", f"weights override of {model} cleared", model=model,
              generation=value["generation"])  # fmt: skip
        return JSONResponse({"model": model, "weights": None, "generation": value["generation"]})

    @router.put(
        "/models/{model}/aliases/{alias}",
        summary="Point an alias at a version (CAS on the generation; all replicas)",
        responses=WRITE,
        openapi_extra=_body(ALIAS_BODY),
    )
    async def set_alias(model: str, alias: str, request: Request) -> JSONResponse:
        entry = current.runtime.registry.model(model)
        data = await _json(request)
        target = data.get("version")
        path = f"models.{model}.aliases.{alias}"
        problems = []
        if not NAME_RE.match(alias) or alias in entry.versions:
            problems.append(f"{path}: invalid alias name (or the name of a version)")
        if not isinstance(target, str) or target not in entry.versions:
            problems.append(f"{path}: unknown version {target!r}")
        expected = _generation(data, problems)
        yaml = current.runtime.config.models[model].aliases.get(alias)
        meta = _provenance(data, yaml, plane.wall(), problems)
        if problems or not isinstance(target, str):
            return _invalid(problems)
        value = await plane.update(model, lambda v: set_alias_in(v, alias, target, meta), expected)
        generation = value["generation"]
        before = entry.aliases.get(alias)
        event(log, "admin_alias", f"alias {model}@{alias} -> {target}", model=model, alias=alias,
              version=target, before=before, source=meta["source"],
              expires_at=meta["expires_at"], generation=generation)  # fmt: skip
        body = {"model": model, "alias": alias, "version": target}
        return JSONResponse({**body, "generation": generation, "override": meta})

    @router.delete(
        "/models/{model}/aliases/{alias}",
        summary="Remove an alias override: the file's alias (if any) applies again",
        responses=WRITE,
    )
    async def clear_alias(model: str, alias: str, request: Request) -> JSONResponse:
        current.runtime.registry.model(model)
        expected = await _expected(request)
        _, stored = await plane.store.get(model)
        if not has_alias(stored, alias):
            raise NotFound(f"model {model!r} has no override of alias {alias!r}")
        value = await plane.update(model, lambda v: clear_alias_in(v, alias), expected)
        event(log, "admin_alias_clear", f"alias override {model}@{alias} cleared", model=model,
              alias=alias, generation=value["generation"])  # fmt: skip
        file_value = current.runtime.config.models[model].aliases.get(alias)
        body = {"model": model, "alias": alias, "version": file_value}
        return JSONResponse({**body, "generation": value["generation"]})


async def _expected(request: Request) -> int | None:
    """The optional `generation` of a DELETE: a query parameter."""
    raw = request.query_params.get("generation")
    if raw is None:
        return None
    if not raw.isdigit():
        raise BadRequest("generation: must be a non-negative integer")
    return int(raw)


def _canary_routes(router: APIRouter, current: Current, controller: CanaryController) -> None:
    @router.get(
        "/models/{model}/canary",
        summary="The canary's state, step, weight, live numbers and decision history",
        responses=CANARY,
    )
    async def canary_status(model: str) -> JSONResponse:
        current.runtime.registry.model(model)
        return JSONResponse(await controller.status(model))

    @router.post(
        "/models/{model}/canary/{action}",
        summary="pause | resume | promote | rollback | revert (a promotion) | restart (a rolled-"
        "back pair, as a new rollout): applied on all replicas",
        responses=CANARY,
    )
    async def canary_action(
        model: str,
        action: Literal["pause", "resume", "promote", "rollback", "revert", "restart"],
    ) -> JSONResponse:
        current.runtime.registry.model(model)
        record = await controller.act(model, action, f"manual {action} via the admin API")
        event(log, "admin_canary", f"canary {model}: manual {action}", model=model, action=action,
              generation=record.generation)  # fmt: skip
        status = await controller.status(model)
        return JSONResponse({**status, "decision": record.to_dict()})
