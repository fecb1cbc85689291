"""Shared text for the store/performance config tests."""

from __future__ import annotations

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError

PERF = """\
store:
  backend: redis
  redis_url: redis://127.0.0.1:6399/0
models:
  chat:
    versions:
      v1: {upstream: {url: "http://127.0.0.1:9001/v1", model: "m"}}
      v2: {upstream: {url: "http://127.0.0.1:9002/v1", model: "m"}}
      v3: {upstream: {url: "http://127.0.0.1:9003/v1", model: "m"}}
    routing:
      strategy: performance
      weights: {v3: 50}
      performance:
        versions: [v1, v2, v3]
        objective: ttft
        min_share: 0.05
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, {})
    return info.value.problems
