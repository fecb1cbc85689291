"""Sample configs the unit tests share: `GOOD` (a valid two-version model whose v2 needs
`V2_KEY`) and `ENV` (the environment it validates in)."""

from __future__ import annotations

import textwrap

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError

GOOD = """\
listen: {host: 127.0.0.1, port: 8080}
models:
  chat:
    aliases: {stable: v1, canary: v2}
    versions:
      v1:
        upstream: {url: "http://127.0.0.1:9001/v1", model: "llama"}
        metadata: {created: 2026-09-01, run_id: run-381, params: {lr: 3.0e-5}}
      v2:
        upstream: {url: "http://127.0.0.1:9002/v1", model: "llama-ft2", api_key_env: V2_KEY}
    routing:
      weights: {v1: 90, v2: 10}
"""
ENV = {"V2_KEY": "secret"}


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), ENV if env is None else env)
    return info.value.problems
