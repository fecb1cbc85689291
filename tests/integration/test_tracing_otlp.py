"""Traces reach a real OTLP/HTTP receiver: the gateway (under uvicorn, tracing on) exports with the
OpenTelemetry SDK's batch processor; the receiver on loopback decodes the protobuf export. A
request whose first version answers 500 is retried on the other: one server span continuing the
client's `traceparent`, two client spans (its children) with the GenAI and gateway attribute
names, the retry reason, and the second attempt's own context is what the upstream received."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.otlp_receiver import ReceivedSpan, Receiver, otlp_receiver
from tests.support import Mock, gateway, version

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
SERVER, CLIENT = 2, 3  # Span.SpanKind
ERROR = 2  # Status.StatusCode


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as r:
        yield r


@pytest.fixture
def failing_v1(mocks: tuple[Mock, Mock]) -> Iterator[tuple[Mock, Mock]]:
    one, two = mocks
    one.configure(error_rate=1)
    try:
        yield one, two
    finally:
        one.configure(error_rate=0)


def in_trace(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.trace_id == trace_id]


def test_spans_arrive_with_genai_attributes_and_parents_across_a_retry(
    receiver: Receiver, failing_v1: tuple[Mock, Mock], workdir: Path
) -> None:
    one, two = failing_v1
    config = {
        "tracing": {"enabled": True, "endpoint": receiver.url, "service_name": "gw-under-test"},
        "models": {
            "chat": {
                "versions": {"v1": version(one.url, one.model), "v2": version(two.url, two.model)},
                "routing": {
                    "weights": {"v1": 100, "v2": 0},
                    "fallback": ["v2"],
                    "ejection": {"enabled": False},
                },
            }
        },
    }
    env = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
    with gateway(config, workdir, env) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0)
        reply = client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"},
        )
        assert reply.choices
        upstream_headers = two.stats()["last_headers"]
        spans = receiver.wait_for(lambda s: len(in_trace(s, TRACE_ID)) >= 3)
    trace = in_trace(spans, TRACE_ID)
    (server,) = [s for s in trace if s.kind == SERVER]
    attempts = sorted(
        (s for s in trace if s.kind == CLIENT), key=lambda s: s.attributes["gateway.attempt"]
    )
    assert len(attempts) == 2 and len(trace) == 3
    assert server.parent_span_id == PARENT_SPAN
    assert server.resource["service.name"] == "gw-under-test"
    assert server.name == "chat chat"
    a = server.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "chat"
    assert a["gen_ai.response.model"] == two.model
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["gateway.version"] == "v2" and a["gateway.attempt"] == 2
    assert a["gateway.routing.reason"] and a["gateway.routing.candidates"] == ["v1", "v2"]
    assert a["http.response.status_code"] == 200 and a["gateway.outcome"] == "success"
    assert (
        "gateway.retry",
        {"gateway.retry.reason": "5xx", "gateway.version": "v2"},
    ) in server.events
    failed, served = attempts
    for span in attempts:
        assert span.parent_span_id == server.span_id
        assert span.attributes["gen_ai.operation.name"] == "chat"
    assert (
        failed.attributes["gateway.version"] == "v1" and failed.attributes["gateway.attempt"] == 1
    )
    assert failed.attributes["gen_ai.request.model"] == one.model
    assert failed.attributes["http.response.status_code"] == 500 and failed.status_code == ERROR
    assert (
        served.attributes["gateway.version"] == "v2" and served.attributes["gateway.attempt"] == 2
    )
    assert served.attributes["gateway.retry.reason"] == "5xx"
    assert served.attributes["gen_ai.response.model"] == two.model
    assert served.attributes["gen_ai.usage.output_tokens"] == a["gen_ai.usage.output_tokens"]
    assert upstream_headers["traceparent"] == f"00-{TRACE_ID}-{served.span_id}-01"
