"""What every config section shares: strict models (unknown keys and loose types are errors)
and the name rules for models, versions, aliases and environment variables."""

from __future__ import annotations

import math
import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-/]{0,127}$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A routing weight's upper bound: shares are weights over their sum, so any larger bound adds no
# expressiveness, and sums of huge weights overflow to inf (1e308 + 1e308) and break routing.
MAX_WEIGHT = 1_000_000.0
WEIGHT_RULE = f"must be a finite number between 0 and {MAX_WEIGHT:.0f}"


class Strict(BaseModel):
    """Unknown keys are errors; types are strict (a quoted number is not a number)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def check_name(value: str, what: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            f"invalid {what} name {value!r}: use letters, digits and . _ - : / (no '@', max 128)"
        )
    return value


def weight_ok(value: object) -> bool:
    """A routing weight: a real number (not a bool), finite, in [0, MAX_WEIGHT]."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return math.isfinite(value) and 0 <= value <= MAX_WEIGHT


def check_env_name(value: str | None, key: str) -> str | None:
    if value is not None and not ENV_RE.match(value):
        raise ValueError(f"{key} must be an environment variable name, got {value!r}")
    return value


def check_http_url(value: str, what: str) -> str:
    """An http(s) URL with a host and no credentials, query or fragment (trailing / dropped)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http:// or https:// URL with a host, got {value!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{what} must not carry credentials, a query or a fragment: {value!r}")
    return value
