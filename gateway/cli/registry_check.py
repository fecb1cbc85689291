"""`gateway validate --online`: ask the model registry what the config expects of it.

For each registry-backed model: the tracking server answers, the registered model exists, and
its versions turn into what the gateway would route (the same `model_view` the poller uses), so
an operator sees the routable versions, the aliases and every refused version with its reason
before deploying. Problems are returned as lines; `cmd_validate` prints them and exits 1.
"""

from __future__ import annotations

import asyncio
import os
import time

from gateway.config import GatewayConfig
from gateway.errors import RegistryError
from gateway.modelregistry.client import MlflowClient
from gateway.modelregistry.view import model_view


def check_online(cfg: GatewayConfig) -> tuple[list[str], list[str]]:
    """(report lines, problems) from reading the registry once."""
    return asyncio.run(_check(cfg))


async def _check(cfg: GatewayConfig) -> tuple[list[str], list[str]]:
    if cfg.registry is None:
        return [], []
    settings = cfg.registry.mlflow
    uri = settings.uri(os.environ) or ""
    token = os.environ.get(settings.token_env) if settings.token_env else None
    client = MlflowClient(uri, token, settings.timeout_s)
    report, problems = [f"registry {uri}:"], []
    try:
        for name, model in cfg.models.items():
            if model.registry is None:
                continue
            registered = model.registry.name or name
            try:
                answer = await client.registered_model(registered)
                versions = await client.versions(registered, settings.max_versions)
            except RegistryError as err:
                problems.append(f"models.{name}.registry: {err.message}")
                continue
            view = model_view(
                name, model.registry, settings.allowed_upstreams, answer, versions, {}, {},
                time.time(),
            )  # fmt: skip
            aliases = ", ".join(f"{a}→{v}" for a, v in view.aliases.items()) or "none"
            routable = ", ".join(view.routable) or "none"
            report.append(
                f"  {name} (registered {registered}): routable {routable}; aliases {aliases}"
            )
            report += [f"    refused {vid}: {why}" for vid, why in view.refused.items()]
            if not view.routable and not model.versions:
                problems.append(f"models.{name}.registry: no routable version in {registered!r}")
    finally:
        await client.aclose()
    return report, problems
