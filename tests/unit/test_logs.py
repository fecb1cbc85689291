"""Structured logs: one JSON access line per request, without secrets or prompts."""

from __future__ import annotations

import json
import logging
from random import Random

import httpx
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.observability.logs import JsonFormatter, configure, event
from tests.fakes import FakeTransport
from tests.samples import ENV, GOOD


async def test_access_line_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json", access=True)
    app = create_app(parse_config(GOOD, ENV), ENV, rng=Random(0))
    app.parts.forwarder.transport = FakeTransport()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        await c.post(
            "/v1/chat/completions",
            json={"model": "chat@v2", "messages": [{"role": "user", "content": "SECRET PROMPT"}]},
            headers={"authorization": "Bearer sk-client-secret", "x-request-id": "req-1"},
        )
    app.parts.access.flush()  # lines are written in batches off the request path
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    access = [x for x in lines if x.get("event") == "access"]
    assert len(access) == 1
    line = access[0]
    assert {
        k: line[k]
        for k in (
            "request_id",
            "model",
            "version",
            "status",
            "outcome",
            "attempts",
            "retries",
            "client",
        )
    } == {
        "request_id": "req-1",
        "model": "chat",
        "version": "v2",
        "status": 200,
        "outcome": "success",
        "attempts": 1,
        "retries": 0,
        "client": "anonymous",
    }
    assert (
        line["latency_ms"] >= 0 and line["ttft_ms"] is not None and line["completion_tokens"] == 2
    )
    raw = json.dumps(lines)
    assert (
        "SECRET PROMPT" not in raw
        and "sk-client-secret" not in raw
        and "secret" not in raw.lower().replace("secret prompt", "")
    )


def test_access_can_be_turned_off_and_text_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure("warning", "text", access=False)
    assert logging.getLogger("gateway.access").disabled
    logging.getLogger("gateway.x").warning("plain")
    assert "WARNING gateway.x: plain" in capsys.readouterr().err
    configure("info", "json", access=True)


def test_event_lines_are_json() -> None:
    record = logging.LogRecord(
        "gateway.reload", logging.INFO, __file__, 1, "reloaded %s", ("r2",), None
    )
    record.fields = {"event": "reload", "revision": "r2"}
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "reloaded r2" and line["event"] == "reload" and line["ts"].endswith("Z")
    event(logging.getLogger("gateway.test"), "custom", "hello", n=1)
