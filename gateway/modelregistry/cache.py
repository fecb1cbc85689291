"""The registry view on disk (`registry.mlflow.cache_path`): written atomically after every view
the gateway adopts, read at start so a restart while the registry is down serves the last view.
An unreadable cache is ignored (logged), never fatal."""

from __future__ import annotations

import json
import logging
import os

from gateway.modelregistry.view import RegistryView

log = logging.getLogger("gateway.registry")


def load(path: str | None) -> RegistryView | None:
    """The view saved by an earlier process (None: no cache, or an unreadable one)."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return RegistryView.from_dict(json.load(fh))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("registry: ignoring the cache %s (%s)", path, exc)
        return None


def save(path: str | None, view: RegistryView) -> None:
    """Write `view` to `path` (a temporary file renamed over it); failures are logged."""
    if not path:
        return
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(view.to_dict(), fh)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("registry: cannot write the cache %s (%s)", path, exc)
