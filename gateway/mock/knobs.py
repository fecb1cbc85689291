"""Mock upstream knobs: the global `MockSettings` and the per-request `x-mock-fault` grammar.

``x-mock-fault`` is a comma-separated list, every item optional::

    fail | fail:CODE   answer CODE (400-599, default 500) with an OpenAI error body
    latency:MS         extra delay before the response headers
    ttft:MS            delay before the first stream chunk (replaces the settings' ttft)
    stall              send nothing, not even headers, until the client disconnects
    stall-after:N      send N stream events, then go silent until the client disconnects
    cut:N              send N stream events, then end the body cleanly (no ``[DONE]``)
    empty              ``text/event-stream`` headers and an empty body
    echo               the answer echoes the request's credential (a leaky upstream, for
                       secret-hygiene tests): with ``fail`` the error message carries the
                       request's headers; a JSON answer gains an ``echo`` member; a chat or
                       completions stream gains one content event, sent split mid-key
    gzip               gzip-encode the answer whatever the request's ``Accept-Encoding``
    gzip-asked         gzip-encode the answer if the request's ``Accept-Encoding`` has gzip
    no-usage           report no token usage (``"usage": null``; a stream sends no usage chunk
                       even when ``stream_options.include_usage`` asks for one)
    chunks:N           content chunks for this request
    chunk-delay:MS     delay between stream chunks for this request

For non-stream answers ``stall-after:N`` / ``cut:N`` count body bytes (headers are sent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INT_KEYS = frozenset(("chunks", "seed"))
CONFIG_KEYS = frozenset(("latency_ms", "ttft_ms", "chunk_delay_ms", "chunks", "error_rate", "seed"))


@dataclass(frozen=True)
class MockSettings:
    """Global knobs of the mock; replaced wholesale by ``POST /mock/config``."""

    model: str = "mock-model"
    latency_ms: float = 0.0  # before the headers (non-stream) / the first chunk (stream)
    ttft_ms: float | None = None  # streams: before the first chunk; None -> latency_ms
    chunks: int = 8  # content chunks of a streamed answer (words of a non-stream one)
    chunk_delay_ms: float = 0.0  # between streamed chunks
    error_rate: float = 0.0  # fraction answered 500, drawn from random.Random(seed)
    seed: int = 0


@dataclass(slots=True)
class Fault:
    """One request's parsed ``x-mock-fault`` header."""

    status: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    stall: bool = False
    stall_after: int | None = None
    cut: int | None = None
    empty: bool = False
    echo: bool = False
    gzip: bool = False
    gzip_asked: bool = False
    no_usage: bool = False
    chunks: int | None = None
    chunk_delay_ms: float | None = None


NO_FAULT = Fault()


def _count(arg: str) -> int:
    value = int(arg)
    if value < 0:
        raise ValueError(f"negative count {arg!r} in x-mock-fault")
    return value


def _millis(arg: str) -> float:
    value = float(arg)
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"bad delay {arg!r} in x-mock-fault")
    return value


def parse_fault(header: str) -> Fault:
    """Parse an ``x-mock-fault`` value; ValueError on any unknown or malformed item."""
    fault = Fault()
    for item in header.split(","):
        name, _, arg = item.strip().partition(":")
        name, arg = name.strip().lower(), arg.strip()
        if name == "fail":
            fault.status = int(arg) if arg else 500
            if not 400 <= fault.status <= 599:
                raise ValueError(f"fail code must be 400-599, got {arg!r}")
        elif name == "latency":
            fault.latency_ms = _millis(arg)
        elif name == "ttft":
            fault.ttft_ms = _millis(arg)
        elif name in ("stall", "empty", "echo", "gzip", "gzip-asked", "no-usage") and not arg:
            setattr(fault, name.replace("-", "_"), True)
        elif name == "stall-after":
            fault.stall_after = _count(arg)
        elif name == "cut":
            fault.cut = _count(arg)
        elif name == "chunks":
            fault.chunks = _count(arg)
        elif name == "chunk-delay":
            fault.chunk_delay_ms = _millis(arg)
        elif name or arg:
            raise ValueError(f"unknown x-mock-fault item {item.strip()!r}")
    return fault


def validate_config(changes: Any) -> dict[str, Any]:
    """The checked `MockSettings` changes of a ``/mock/config`` body; ValueError if invalid."""
    if not isinstance(changes, dict):
        raise ValueError("config body must be a JSON object")
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in CONFIG_KEYS:
            raise ValueError(f"unknown config key {key!r}; allowed: {sorted(CONFIG_KEYS)}")
        if key == "ttft_ms" and value is None:
            out[key] = None
            continue
        kind = "integer" if key in INT_KEYS else "number"
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or not value >= 0 or (kind == "integer" and not isinstance(value, int)):
            raise ValueError(f"{key} must be a non-negative {kind}")
        if key == "error_rate" and value > 1:
            raise ValueError("error_rate must be within [0, 1]")
        out[key] = value if kind == "integer" else float(value)
    return out
