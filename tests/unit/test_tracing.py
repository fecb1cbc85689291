"""Request tracing with the OpenTelemetry SDK exporting to memory: one server span per request,
a client span per upstream attempt (its child), GenAI attribute names, the routing decision and a
retry's reason, an incoming `traceparent` continued and each attempt's context sent upstream; with
tracing off neither the SDK nor the exporter is even imported."""

from __future__ import annotations

import re
import subprocess
import sys
from random import Random

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.app import App, create_app
from gateway.config import parse_config
from gateway.config.schema import Tracing
from gateway.observability.otel import OtelTracer, operation
from gateway.observability.tracing import build_tracer
from tests.fakes import FakeResponse, FakeTransport
from tests.samples import ENV, GOOD

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
RETRYING = GOOD + 'defaults:\n  retry: {attempts: 2, "on": ["5xx"]}\n'


def traced(text: str) -> tuple[App, FakeTransport, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer = OtelTracer(Tracing(enabled=True), {}, SimpleSpanProcessor(exporter))
    gw = create_app(parse_config(text, ENV), ENV, rng=Random(5), tracer=tracer)
    fake = FakeTransport()
    gw.parts.forwarder.transport = fake
    return gw, fake, exporter


async def post(gw: App, body: dict[str, object], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as c:
        return await c.post("/v1/chat/completions", json=body, headers=headers)


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.kind == kind), key=lambda s: s.start_time or 0)


async def test_one_server_span_and_a_client_span_per_attempt_across_a_retry() -> None:
    gw, fake, exporter = traced(RETRYING)
    first: list[str] = []

    def answer(url: str) -> FakeResponse:
        if not first:
            first.append(url)
            return FakeResponse(503, [(b"content-type", b"application/json")], [b"{}"])
        return FakeResponse(
            200,
            [(b"content-type", b"application/json")],
            [b'{"usage":{"prompt_tokens":4,"completion_tokens":2}}'],
        )

    fake.answer = answer
    resp = await post(gw, {"model": "chat"}, traceparent=PARENT, tracestate="k=v")
    assert resp.status_code == 200
    spans = exporter.get_finished_spans()
    (server,) = by_kind(spans, SpanKind.SERVER)
    attempts = by_kind(spans, SpanKind.CLIENT)
    assert len(attempts) == 2 == len(fake.calls)
    assert format(server.context.trace_id, "032x") == TRACE_ID  # continued, not a new trace
    assert server.parent is not None and format(server.parent.span_id, "016x") == "b7ad6b7169203331"
    assert server.name == "chat chat"
    a = server.attributes or {}
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "chat"
    assert a["gateway.attempt"] == 2 and a["gateway.version"] in ("v1", "v2")
    assert a["gen_ai.usage.input_tokens"] == 4 and a["gen_ai.usage.output_tokens"] == 2
    assert a["gateway.routing.reason"] == "weighted"
    assert len(a["gateway.routing.candidates"]) == 2  # type: ignore[arg-type]
    assert a["http.response.status_code"] == 200 and a["gateway.outcome"] == "success"
    (event,) = server.events
    assert (
        event.name == "gateway.retry" and (event.attributes or {})["gateway.retry.reason"] == "5xx"
    )
    for number, (span, (_url, headers, body)) in enumerate(zip(attempts, fake.calls, strict=True)):
        assert span.parent is not None and span.parent.span_id == server.context.span_id
        assert span.context.trace_id == server.context.trace_id
        sa = span.attributes or {}
        assert sa["gateway.attempt"] == number + 1
        assert sa["gen_ai.request.model"] == body["model"]
        assert span.name == f"chat {body['model']}"
        span_id = format(span.context.span_id, "016x")
        assert headers["traceparent"] == f"00-{TRACE_ID}-{span_id}-01"  # the attempt's context
        assert headers["tracestate"] == "k=v"
    failed, served = attempts
    assert failed.status.status_code == StatusCode.ERROR
    assert (failed.attributes or {})["http.response.status_code"] == 503
    assert "gateway.retry.reason" not in (failed.attributes or {})
    assert (served.attributes or {})["gateway.retry.reason"] == "5xx"
    assert (served.attributes or {})["gen_ai.response.model"] == a["gen_ai.response.model"]
    assert (served.attributes or {})["gen_ai.usage.output_tokens"] == 2


async def test_a_refused_request_has_a_server_span_and_no_attempt() -> None:
    gw, fake, exporter = traced(GOOD)
    resp = await post(gw, {"model": "nope"})
    assert resp.status_code == 404 and not fake.calls
    (server,) = exporter.get_finished_spans()
    assert server.kind == SpanKind.SERVER and server.parent is None
    a = server.attributes or {}
    assert a["http.response.status_code"] == 404 and a["gateway.attempt"] == 0
    assert a["gateway.outcome"] == "client_error"


def test_operation_names_follow_the_genai_conventions() -> None:
    assert operation("/v1/chat/completions") == "chat"
    assert operation("/v1/completions") == "text_completion"
    assert operation("/v1/embeddings") == "embeddings"


def test_tracing_off_builds_nothing_and_imports_no_opentelemetry() -> None:
    assert build_tracer(Tracing(), {}) is None
    code = (
        "import sys\n"
        "from gateway.app import create_app\n"
        "from gateway.config import parse_config\n"
        "from tests.samples import ENV, GOOD\n"
        "gw = create_app(parse_config(GOOD, ENV), ENV)\n"
        "assert gw.parts.tracer is None and gw.parts.endpoint._tracer is None\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk.trace', 'opentelemetry.exporter'))]\n"
        "assert not loaded and 'gateway.observability.otel' not in sys.modules, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def sampled_app(ratio: float, seed: int = 7) -> tuple[App, FakeTransport, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    settings = Tracing(enabled=True, sample_ratio=ratio)
    tracer = OtelTracer(settings, {}, SimpleSpanProcessor(exporter), Random(seed))
    gw = create_app(parse_config(GOOD, ENV), ENV, rng=Random(5), tracer=tracer)
    fake = FakeTransport()
    gw.parts.forwarder.transport = fake
    return gw, fake, exporter


async def test_an_unsampled_request_records_nothing_and_tells_the_upstream() -> None:
    """sample_ratio 0: no span at all; the upstream still learns the trace is not sampled."""
    gw, fake, exporter = sampled_app(0.0)
    unsampled = f"00-{TRACE_ID}-b7ad6b7169203331-00"
    await post(gw, {"model": "chat"}, traceparent=unsampled, tracestate="k=v")
    await post(gw, {"model": "chat"})
    await post(gw, {"model": "chat"}, traceparent=f"00-{'0' * 32}-b7ad6b7169203331-01")
    assert exporter.get_finished_spans() == ()
    (_, continued, _), (_, new, _), (_, invalid, _) = fake.calls
    assert re.fullmatch(f"00-{TRACE_ID}-[0-9a-f]{{16}}-00", continued["traceparent"])
    assert continued["traceparent"] != unsampled and continued["tracestate"] == "k=v"
    for headers in (new, invalid):  # a new trace id, never the all-zero one
        assert re.fullmatch("00-[0-9a-f]{32}-[0-9a-f]{16}-00", headers["traceparent"])
        assert TRACE_ID not in headers["traceparent"] and "0" * 32 not in headers["traceparent"]
        assert "tracestate" not in headers


async def test_an_incoming_sampled_trace_is_kept_whatever_the_ratio() -> None:
    gw, fake, exporter = sampled_app(0.0)
    await post(gw, {"model": "chat"}, traceparent=PARENT)
    server, attempt = by_kind(exporter.get_finished_spans(), SpanKind.SERVER), fake.calls[0][1]
    assert format(server[0].context.trace_id, "032x") == TRACE_ID
    assert (
        attempt["traceparent"].startswith(f"00-{TRACE_ID}-") and attempt["traceparent"][-2:] == "01"
    )


async def test_new_traces_are_kept_at_the_sample_ratio() -> None:
    """400 requests at ratio 0.25 (seeded): kept ~ Binomial(400, 0.25), sd 8.7; ±4 sd."""
    gw, _, exporter = sampled_app(0.25)
    for _ in range(400):
        await post(gw, {"model": "chat"})
    kept = len(by_kind(exporter.get_finished_spans(), SpanKind.SERVER))
    assert abs(kept - 100) <= 35, kept
