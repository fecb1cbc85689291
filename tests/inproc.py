"""In-process gateways for unit tests: the sample configs with the admin API or a canary, an app
built on them (no process, no socket), and admin calls through ASGI."""

from __future__ import annotations

from random import Random
from typing import Any

import httpx

from gateway.app import App, create_app
from gateway.config import parse_config
from tests.fakes import FakeTransport
from tests.samples import GOOD

TOKEN = "adm-" + "x" * 28
ENV = {"V2_KEY": "secret", "ADMIN_TOKEN": TOKEN}
AUTH = {"authorization": f"Bearer {TOKEN}"}
WITH_ADMIN = GOOD + "admin: {token_env: ADMIN_TOKEN}\n"
CANARY = GOOD.replace(
    "      weights: {v1: 90, v2: 10}\n",
    """      strategy: canary
      canary:
        baseline: v1
        candidate: v2
        analysis: {bucket_s: 1, warmup_requests: 0, warmup_s: 0, metric: none}
        steps:
          - {weight: 10, min_samples: 70, min_duration_s: 2, max_duration_s: 120}
          - {weight: 50, min_samples: 70, min_duration_s: 2, max_duration_s: 120}
""",
)


def admin_app(text: str = WITH_ADMIN) -> App:
    return create_app(parse_config(text, ENV), ENV, rng=Random(0))


async def call(
    gw: App, method: str, path: str, body: object = None, auth: bool = True
) -> httpx.Response:
    """An admin (or any) call with the admin token, a JSON body if given."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as c:
        return await c.request(method, path, json=body, headers=AUTH if auth else {})


def faked(text: str, seed: int = 3) -> tuple[App, FakeTransport]:
    """An app on `text` (admin token set) whose upstreams are a `FakeTransport`."""
    gw = create_app(parse_config(text, ENV), ENV, rng=Random(seed))
    fake = FakeTransport()
    gw.parts.forwarder.transport = fake
    return gw, fake


async def send(gw: App, method: str, path: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as c:
        return await c.request(method, path, **kw)
