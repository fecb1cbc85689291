"""Reading the registry beside the request path: `RegistryPoller`.

Every replica runs `RegistryPoller.run()`: every `poll_s` it reads each registry-backed model
(`registered-models/get`, `model-versions/search`, then `runs/get` and `experiments/get` for
runs it has not seen finish), builds the `RegistryView` (`view.model_view`) and hands it to
`apply` (the composition root's: merge it into a new runtime and swap that in). Nothing here is
awaited by a request.

Faults never reach clients:
- a failed or garbled read keeps the last good view; the next try comes after a backoff
  (0.5 s doubling, jittered, never longer than `poll_s` or `backoff_max_s`), so the view
  recovers within one poll of the registry coming back;
- a model whose answer has no routable version keeps its previous view, flagged (a deleted last
  version goes on serving; the refusal is reported); a model the registry says does not exist
  keeps its previous view too;
- a view `apply` refuses (it would not route: `ConfigError`) is not adopted;
- with `cache_path`, every adopted view is written there and read at start (`cache`), so a
  restart while the registry is down serves the last view.

`status()` is what `GET /admin/registry` and `gateway registry status` show.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from gateway.config.routes import ModelRegistry
from gateway.config.schema import Mlflow
from gateway.errors import ConfigError, RegistryError, RegistryNotFound
from gateway.modelregistry import cache
from gateway.modelregistry.client import MlflowClient
from gateway.modelregistry.view import ModelView, RegistryView, model_view
from gateway.observability.logs import event
from gateway.observability.registry import RegistryMetrics

log = logging.getLogger("gateway.registry")
FIRST_RETRY_S = 0.5
FINISHED = frozenset({"FINISHED", "FAILED", "KILLED"})


class RegistryPoller:
    def __init__(
        self,
        settings: Mlflow,
        models: Callable[[], Mapping[str, ModelRegistry]],
        client: MlflowClient,
        apply: Callable[[RegistryView], None],
        metrics: RegistryMetrics,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._models = models
        self.client = client
        self._apply = apply
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self.view: RegistryView | None = None
        self.up: bool | None = None  # None: not read yet
        self.last_sync: float | None = None
        self.last_attempt: float | None = None
        self.last_error: str | None = None
        self.failures = 0  # reads failed in a row
        self.problems: dict[str, str] = {}  # model → why its latest answer was not adopted
        self._runs: dict[str, dict[str, Any]] = {}  # finished runs (they no longer change)
        self._experiments: dict[str, str] = {}

    async def run(self) -> None:
        """Read every `poll_s` until cancelled; after a failure, retry sooner (backoff)."""
        while True:
            await asyncio.sleep(self.delay())
            try:
                await self.poll()
            except Exception:  # never let the loop die; the next tick tries again
                log.exception("registry: poll failed")

    def delay(self) -> float:
        """Seconds to the next read: `poll_s`, or the backoff after failures (jittered)."""
        if not self.failures:
            return self.settings.poll_s
        backoff = FIRST_RETRY_S * 2 ** (self.failures - 1)
        cap = min(self.settings.poll_s, self.settings.backoff_max_s)
        return float(min(backoff, cap) * self._rng.uniform(0.8, 1.0))

    async def poll(self) -> bool:
        """One read of the registry; True when a new view was adopted."""
        self.last_attempt = now = self._clock()
        try:
            view = await self.read(now)
        except RegistryError as err:
            self._failed(err.message)
            return False
        if self.failures or self.up is not True:
            event(log, "registry_up", "registry: reachable", uri=self.client.base_url)
        self.up, self.failures, self.last_sync = True, 0, now
        self._metrics.read(True, now)
        return self.adopt(view)

    def adopt(self, view: RegistryView) -> bool:
        """Apply `view` unless it says what the one in use says (then only its read times are
        kept, for the status); a view that cannot be routed is refused."""
        if view.same_as(self.view):
            self.view = view
            return False
        try:
            self._apply(view)
        except ConfigError as err:
            self._metrics.error("refused")
            self.last_error = "registry answer refused, last good view kept: " + "; ".join(
                err.problems
            )
            log.error("registry: %s", self.last_error)
            return False
        self.view = view
        for name, mv in view.models.items():
            self._metrics.counts(name, len(mv.routable), len(mv.refused))
        cache.save(self.settings.cache_path, view)
        event(log, "registry_view", "registry: new view applied", models=sorted(view.models))
        return True

    def _failed(self, message: str) -> None:
        if self.up is not False:
            log.warning("registry: read failed (%s); keeping the last good view", message)
        self.up, self.last_error = False, message
        self.failures += 1
        self._metrics.read(False, self._clock())

    async def read(self, now: float) -> RegistryView:
        """Every registry-backed model's view (a failed model keeps its previous one)."""
        previous = self.view.models if self.view else {}
        models: dict[str, ModelView] = {}
        for name, settings in self._models().items():
            try:
                mv = await self._read_model(name, settings, now)
            except RegistryNotFound as err:
                self.problems[name] = err.message
                self._metrics.error("refused")
                if name in previous:
                    models[name] = previous[name].kept(err.message)
                continue
            old = previous.get(name)
            if not mv.routable and old is not None and old.routable:
                reason = "the registry lists no routable version; kept the last ones"
                self.problems[name] = reason + _refusals(mv)
                self._metrics.error("refused")
                mv = old.kept(reason)
            else:
                self.problems.pop(name, None)
            models[name] = mv
        return RegistryView(models)

    async def _read_model(self, name: str, settings: ModelRegistry, now: float) -> ModelView:
        registered_name = settings.name or name
        registered = await self.client.registered_model(registered_name)
        versions = await self.client.versions(registered_name, self.settings.max_versions)
        runs = {}
        for raw in versions:
            run_id = raw.get("run_id")
            if isinstance(run_id, str) and run_id:
                runs[run_id] = await self._run(run_id)
        return model_view(
            name,
            settings,
            self.settings.allowed_upstreams,
            registered,
            versions,
            runs,
            self._experiments,
            now,
        )

    async def _run(self, run_id: str) -> dict[str, Any]:
        run = self._runs.get(run_id)
        if run is not None:
            return run
        try:
            run = await self.client.run(run_id)
        except RegistryNotFound:
            return {}  # a deleted run: the version keeps its own lineage
        info = run.get("info") if isinstance(run.get("info"), dict) else {}
        assert isinstance(info, dict)
        experiment_id = str(info.get("experiment_id") or "")
        if experiment_id and experiment_id not in self._experiments:
            try:
                experiment = await self.client.experiment(experiment_id)
                self._experiments[experiment_id] = str(experiment.get("name") or "")
            except RegistryNotFound:
                self._experiments[experiment_id] = ""
        if info.get("status") in FINISHED:
            self._runs[run_id] = run
        return run

    def load_cache(self) -> RegistryView | None:
        """The view an earlier process saved at `cache_path`, if any."""
        return cache.load(self.settings.cache_path)

    def status(self) -> dict[str, Any]:
        """What was read, when, and which versions were refused and why."""
        view = self.view.models if self.view else {}
        return {
            "tracking_uri": self.client.base_url,
            "up": self.up,
            "poll_s": self.settings.poll_s,
            "last_sync": self.last_sync,
            "last_attempt": self.last_attempt,
            "last_error": self.last_error,
            "failures_in_a_row": self.failures,
            "models": {
                name: {
                    "registered_model": mv.registered,
                    "read_at": mv.read_at,
                    "warning": mv.warning,
                    "problem": self.problems.get(name),
                    "aliases": dict(mv.aliases),
                    "routable": list(mv.routable),
                    "refused": mv.refused,
                }
                for name, mv in view.items()
            },
            "waiting": sorted(set(self._models()) - set(view)),
        }


def _refusals(mv: ModelView) -> str:
    refused = mv.refused
    return (" (" + "; ".join(f"{v}: {r}" for v, r in refused.items()) + ")") if refused else ""


def build_poller(
    settings: Mlflow,
    models: Callable[[], Mapping[str, ModelRegistry]],
    environ: Mapping[str, str],
    apply: Callable[[RegistryView], None],
    metrics: RegistryMetrics,
) -> RegistryPoller:
    """The poller for `registry.mlflow` (its token read from `token_env`)."""
    uri = settings.uri(environ)
    if uri is None:  # the config checks refuse this; kept for callers that skip them
        raise ConfigError(["registry.mlflow.tracking_uri: not set"])
    token = environ.get(settings.token_env) if settings.token_env else None
    client = MlflowClient(uri, token, settings.timeout_s)
    return RegistryPoller(settings, models, client, apply, metrics)
