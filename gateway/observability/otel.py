"""The OpenTelemetry implementation of request tracing (imported only with tracing on).

One SERVER span per client request and one CLIENT span per upstream attempt, its child, named and
attributed after the OpenTelemetry GenAI semantic conventions: `gen_ai.operation.name`,
`gen_ai.request.model` (the public model on the server span, the upstream's model name on an
attempt), `gen_ai.response.model`, `gen_ai.usage.input_tokens` / `output_tokens`; and the
gateway's own: `gateway.version` (the model version that served or was tried), `gateway.attempt`
(the attempt's number; on the server span, how many were made), `gateway.routing.reason` and
`gateway.routing.candidates` (the routing decision), `gateway.retry.reason` on a retry's attempt
plus a `gateway.retry` event on the server span, `gateway.outcome`, `gateway.key` (the client
key's id) and `gateway.request_id`.

An incoming W3C `traceparent`/`tracestate` is continued (the server span is its child) and each
attempt's own context replaces it on the way upstream. Spans go to a `BatchSpanProcessor`: ending
a span appends it to a bounded queue; a background thread exports batches over OTLP/HTTP. The
provider is the gateway's own (never the global one), so embedding code keeps its tracing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from random import Random
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway import __version__
from gateway.config.schema import Tracing
from gateway.exchange import (
    RATE_LIMITED,
    SUCCESS,
    VERSION_FAILURES,
    Attempt,
    Exchange,
    RequestTrace,
)
from gateway.observability.unsampled import UnsampledTrace, parent_sampled

OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
}
PROPAGATED = ("traceparent", "tracestate")
PROPAGATOR = TraceContextTextMapPropagator()
ATTEMPT_ERRORS = VERSION_FAILURES | {RATE_LIMITED}


def operation(path: str) -> str:
    """`gen_ai.operation.name` for a proxy path (the path's last segment if not a known one)."""
    return OPERATIONS.get(path) or path.rstrip("/").rsplit("/", 1)[-1]


class OtelTracer:
    def __init__(
        self,
        settings: Tracing,
        environ: Mapping[str, str],
        processor: SpanProcessor | None = None,
        rng: Random | None = None,
    ) -> None:
        attributes: dict[str, str] = {"service.version": __version__}
        if not environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = settings.service_name
        # With a ratio the gateway samples itself, before the SDK sees the request (see
        # `unsampled.py`); the SDK then records every span it is given. Without one the SDK's
        # sampler decides (`OTEL_TRACES_SAMPLER`, else every trace).
        self._ratio = settings.sample_ratio
        self._rng = rng or Random()
        self.provider = TracerProvider(
            resource=Resource.create(attributes),
            sampler=None if self._ratio is None else ParentBased(ALWAYS_ON),
        )
        if processor is None:
            processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint))
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("gateway", __version__)

    def start(self, headers: Mapping[bytes, bytes], ex: Exchange) -> RequestTrace:
        if self._ratio is not None:
            traceparent = headers.get(b"traceparent")
            sampled = parent_sampled(traceparent)
            if sampled is None:  # a new trace
                sampled = self._rng.random() < self._ratio
            if not sampled:
                return UnsampledTrace(traceparent, headers.get(b"tracestate"), self._rng)
        return self._recorded(headers, ex)

    def _recorded(self, headers: Mapping[bytes, bytes], ex: Exchange) -> ServerTrace:
        carrier = {
            name: value.decode("latin-1")
            for name in PROPAGATED
            if (value := headers.get(name.encode())) is not None
        }
        parent = PROPAGATOR.extract(carrier) if carrier else None
        op = operation(ex.path)
        span = self.tracer.start_span(
            op,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "gen_ai.operation.name": op,
                "http.request.method": "POST",
                "url.path": ex.path,
                "gateway.request_id": ex.request_id,
            },
        )
        return ServerTrace(self, span, op)

    async def shutdown(self) -> None:
        await asyncio.to_thread(self.provider.shutdown)


class ServerTrace:
    """The spans of one request (`gateway.exchange.RequestTrace`)."""

    __slots__ = (
        "_attempts",
        "_context",
        "_op",
        "_retry_reason",
        "_tracer",
        "_upstream_model",
        "span",
    )

    def __init__(self, tracer: OtelTracer, span: Span, op: str) -> None:
        self._tracer = tracer
        self.span = span
        self._op = op
        self._context: Context = set_span_in_context(span)
        self._attempts = 0
        self._retry_reason = ""
        self._upstream_model = ""

    def routed(self, order: tuple[str, ...]) -> None:
        self.span.set_attribute("gateway.routing.candidates", list(order))

    def retried(self, reason: str, version: str) -> None:
        self._retry_reason = reason
        self.span.add_event(
            "gateway.retry", {"gateway.retry.reason": reason, "gateway.version": version}
        )

    def attempt(self, attempt: Attempt, upstream_model: str, url: str) -> ClientTrace:
        self._attempts += 1
        self._upstream_model = upstream_model
        parts = urlsplit(url)
        attributes: dict[str, str | int] = {
            "gen_ai.operation.name": self._op,
            "gen_ai.request.model": upstream_model,
            "gateway.version": attempt.version,
            "gateway.attempt": self._attempts,
            "http.request.method": "POST",
            "server.address": parts.hostname or "",
            "server.port": parts.port or (443 if parts.scheme == "https" else 80),
        }
        if self._retry_reason:
            attributes["gateway.retry.reason"] = self._retry_reason
            self._retry_reason = ""
        span = self._tracer.tracer.start_span(
            f"{self._op} {upstream_model}",
            context=self._context,
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        return ClientTrace(span, upstream_model)

    def end(self, ex: Exchange) -> None:
        span = self.span
        if span.is_recording():
            if ex.model is not None:
                span.update_name(f"{self._op} {ex.model}")
                span.set_attribute("gen_ai.request.model", ex.model)
            if self._upstream_model:
                span.set_attribute("gen_ai.response.model", self._upstream_model)
            if ex.version is not None:
                span.set_attribute("gateway.version", ex.version)
            _usage(span, ex.prompt_tokens, ex.completion_tokens)
            span.set_attributes(
                {
                    "gateway.attempt": self._attempts,
                    "gateway.routing.reason": ex.routing_reason,
                    "gateway.outcome": ex.outcome,
                    "gateway.key": ex.client,
                    "gen_ai.request.stream": ex.stream,
                    "http.response.status_code": ex.status,
                }
            )
            if ex.status >= 500:
                span.set_status(Status(StatusCode.ERROR, ex.outcome))
                span.set_attribute("error.type", ex.outcome)
        span.end()


class ClientTrace:
    """The span of one upstream attempt (`gateway.exchange.AttemptTrace`)."""

    __slots__ = ("_model", "span")

    def __init__(self, span: Span, upstream_model: str) -> None:
        self.span = span
        self._model = upstream_model

    def inject(self, headers: list[tuple[str, str]]) -> None:
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier, context=set_span_in_context(self.span))
        headers[:] = [(name, value) for name, value in headers if name not in PROPAGATED]
        headers.extend(carrier.items())

    def end(self, attempt: Attempt) -> None:
        span = self.span
        if span.is_recording():
            span.set_attribute("gateway.outcome", attempt.outcome)
            if attempt.status:
                span.set_attribute("http.response.status_code", attempt.status)
            if attempt.outcome == SUCCESS:
                span.set_attribute("gen_ai.response.model", self._model)
                _usage(span, attempt.prompt_tokens, attempt.completion_tokens)
            elif attempt.outcome in ATTEMPT_ERRORS:
                span.set_status(Status(StatusCode.ERROR, attempt.outcome))
                span.set_attribute("error.type", attempt.outcome)
        span.end()


def _usage(span: Span, prompt: int, completion: int) -> None:
    if prompt or completion:
        span.set_attribute("gen_ai.usage.input_tokens", prompt)
        span.set_attribute("gen_ai.usage.output_tokens", completion)
