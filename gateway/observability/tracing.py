"""OpenTelemetry tracing, optional: the seam the request path calls, and how it is switched on.

Owns the decision whether traces exist at all. With `tracing.enabled: false` (the default)
`build_tracer` returns None, nothing of OpenTelemetry is imported, and the request path pays one
`is None` check per request (and per attempt). Switched on, the OpenTelemetry SDK and its OTLP/HTTP
exporter (the `tracing` extra) are loaded from `gateway.observability.otel`; without them the
gateway refuses to start with a clear message rather than run without the traces it was asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from gateway.config.schema import Tracing
from gateway.errors import ConfigError
from gateway.exchange import Exchange, RequestTrace

EXTRA_HINT = "install the tracing extra: pip install 'llm-version-gateway[tracing]'"


class RequestTracer(Protocol):
    """One per process: starts the spans of each request, exports them off the request path."""

    def start(self, headers: Mapping[bytes, bytes], ex: Exchange) -> RequestTrace:
        """The server span of a new request, continuing an incoming `traceparent`."""
        ...

    async def shutdown(self) -> None:
        """Export what is still queued (bounded by the exporter's timeout) and stop."""
        ...


def build_tracer(settings: Tracing, environ: Mapping[str, str]) -> RequestTracer | None:
    """The tracer for `settings`, or None when tracing is off."""
    if not settings.enabled:
        return None
    try:
        from gateway.observability.otel import OtelTracer
    except ImportError as exc:
        raise ConfigError(
            [f"tracing.enabled: OpenTelemetry is not installed ({exc}); {EXTRA_HINT}"]
        ) from None
    return OtelTracer(settings, environ)
