"""The MLflow REST client: the few registry and tracking calls the gateway makes, async (httpx).

Reads: `registered-models/get`, `model-versions/search` (every page), `runs/get`,
`experiments/get`. Writes (the leader's rollout write-back): `model-versions/set-tag`,
`model-versions/delete-tag`, `registered-models/alias` (set and delete). Every call is bounded by
the configured timeout; every failure (transport, HTTP status, a body that is not the JSON object
MLflow documents) becomes a `RegistryError` here, so nothing above sees an httpx exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from gateway.errors import RegistryError, RegistryNotFound

API = "/api/2.0/mlflow"
PAGE = 200
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"


class MlflowClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url + API,
            headers=headers,
            timeout=timeout_s,
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, params=params, json=body)
        except httpx.HTTPError as exc:
            raise RegistryError(f"{path}: {type(exc).__name__}: {exc}") from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            detail = data.get("message") if isinstance(data, dict) else response.text[:200]
            cls = RegistryNotFound if _code(data) == NOT_FOUND else RegistryError
            raise cls(f"{path}: HTTP {response.status_code}: {detail}")
        if not isinstance(data, dict):
            raise RegistryError(f"{path}: the answer is not a JSON object")
        return data

    async def registered_model(self, name: str) -> dict[str, Any]:
        data = await self._call("GET", "/registered-models/get", {"name": name})
        return _object(data, "registered_model", "/registered-models/get")

    async def versions(self, name: str, limit: int) -> list[dict[str, Any]]:
        """Every version of `name` (newest first, at most `limit`), following page tokens."""
        out: list[dict[str, Any]] = []
        token: str | None = None
        while len(out) < limit:
            params = {
                "filter": f"name='{_quoted(name)}'",
                "max_results": min(PAGE, limit - len(out)),
                "order_by": "version_number DESC",
            }
            if token:
                params["page_token"] = token
            data = await self._call("GET", "/model-versions/search", params)
            page = data.get("model_versions", [])
            if not isinstance(page, list) or not all(isinstance(v, dict) for v in page):
                raise RegistryError("/model-versions/search: model_versions is not a list")
            out.extend(page)
            token = data.get("next_page_token") or None
            if not token or not page:
                break
        return out[:limit]  # a server may send more than `max_results`

    async def run(self, run_id: str) -> dict[str, Any]:
        data = await self._call("GET", "/runs/get", {"run_id": run_id})
        return _object(data, "run", "/runs/get")

    async def experiment(self, experiment_id: str) -> dict[str, Any]:
        data = await self._call("GET", "/experiments/get", {"experiment_id": experiment_id})
        return _object(data, "experiment", "/experiments/get")

    async def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        body = {"name": name, "version": version, "key": key, "value": value}
        await self._call("POST", "/model-versions/set-tag", body=body)

    async def set_alias(self, name: str, alias: str, version: str) -> None:
        body = {"name": name, "alias": alias, "version": version}
        await self._call("POST", "/registered-models/alias", body=body)

    async def delete_alias(self, name: str, alias: str) -> None:
        """Remove `alias` (done already counts as done: the write-back is idempotent)."""
        try:
            body = {"name": name, "alias": alias}
            await self._call("DELETE", "/registered-models/alias", body=body)
        except RegistryNotFound:
            return


def _code(data: Any) -> str | None:
    return data.get("error_code") if isinstance(data, dict) else None


def _object(data: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise RegistryError(f"{path}: the answer has no {key!r} object")
    return value


def _quoted(name: str) -> str:
    return name.replace("\\", "\\\\").replace("'", "\\'")
