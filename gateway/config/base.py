"""What every config section shares: strict models (unknown keys and loose types are errors)
and the name rules for models, versions, aliases and environment variables."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-/]{0,127}$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Strict(BaseModel):
    """Unknown keys are errors; types are strict (a quoted number is not a number)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def check_name(value: str, what: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            f"invalid {what} name {value!r}: use letters, digits and . _ - : / (no '@', max 128)"
        )
    return value


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
