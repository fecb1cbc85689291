"""Hot reload: re-read the config file on change, on SIGHUP, or on `POST /admin/reload`.

A new config is validated whole (the same `load_config` as start-up) and swapped in atomically;
a bad one is rejected with its reasons (returned to the admin caller, logged, counted in
`gateway_config_reloads_total{result="rejected"}`) and the running config stays. Requests in
flight finish on the config they started with (they hold their own `Runtime`). `listen`,
`store`, `registry`, `responses`, `drain`, `logging` and `tracing` are read at start-up only; a
reload that changes them says so and keeps the old ones (the per-model `registry` blocks do follow
reloads). So are a few fields of sections that otherwise follow reloads (the admin token and
listener, the rate limiter's settings): a change to them is noted, the rest of the section
applies. It also notes every operator
override that hides a value the file changed (the override still wins until it is cleared or
expires).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config import GatewayConfig, load_config
from gateway.config.schema import Auth
from gateway.errors import ConfigError
from gateway.observability.logs import event
from gateway.runtime.current import Current
from gateway.runtime.overrides import shadowed

log = logging.getLogger("gateway.reload")
RESTART_KEYS = ("listen", "store", "registry", "responses", "drain", "logging", "tracing")
RESTART_FIELDS = (  # fields read at start-up only, in sections otherwise read live
    ("admin", "token_env"),
    ("admin", "listen"),
    ("auth", "timeout_ms"),  # the rate limiter's
    ("auth", "fallback_share"),
)


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    revision: str
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


class Reloader:
    def __init__(
        self, current: Current, path: str, environ: Mapping[str, str] | None = None
    ) -> None:
        self._current = current
        self._path = path
        self._environ = environ
        self._seen = self._fingerprint()

    def reload(self) -> ReloadResult:
        """Validate the file and swap it in, or keep the running config and say why."""
        old = self._current.runtime
        self._seen = self._fingerprint()
        environ = os.environ if self._environ is None else self._environ
        running = old.file_config
        try:
            loaded = load_config(self._path, self._environ)
            kept = {key: getattr(running, key) for key in RESTART_KEYS}
            cfg = loaded.model_copy(update=kept)
            runtime = old.rebuilt(environ, cfg=cfg)  # keeps the overrides and the registry view
        except ConfigError as err:
            old.metrics.reloads.labels("rejected").inc()
            log.error(
                "config reload rejected, keeping revision %s: %s",
                old.revision,
                "; ".join(err.problems),
            )
            return ReloadResult(False, old.revision, tuple(err.problems))
        notes = _restart_notes(loaded, running) + tuple(shadowed(running, cfg, old.overrides))
        self._current.swap(runtime)
        old.metrics.reloads.labels("applied").inc()
        event(
            log,
            "reload",
            f"config reloaded: revision {old.revision} -> {runtime.revision}",
            result="applied",
            revision=runtime.revision,
            previous=old.revision,
            notes=notes,
        )
        return ReloadResult(True, runtime.revision, notes=notes)

    async def watch(self, interval_s: float = 1.0) -> None:
        """Poll the file (mtime, size and content hash) and reload when it changes."""
        while True:
            await asyncio.sleep(interval_s)
            if self._fingerprint() != self._seen:
                self.reload()

    def _fingerprint(self) -> str:
        try:
            with open(self._path, "rb") as fh:
                return hashlib.sha256(fh.read()).hexdigest()
        except OSError:
            return ""


def _restart_notes(loaded: GatewayConfig, running: GatewayConfig) -> tuple[str, ...]:
    """What `loaded` changes that only a restart applies."""
    changed = [key for key in RESTART_KEYS if getattr(loaded, key) != getattr(running, key)]
    changed += [
        f"{section}.{key}"
        for section, key in RESTART_FIELDS
        if _field(loaded, section, key) != _field(running, section, key)
    ]
    return tuple(f"{key} changes need a restart (kept the running value)" for key in changed)


def _field(cfg: GatewayConfig, section: str, key: str) -> object:
    """`cfg.<section>.<key>`, or its default when the (optional) section is absent."""
    part = getattr(cfg, section)
    return getattr(part, key) if part is not None else Auth.model_fields[key].default  # `auth`
