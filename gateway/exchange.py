"""The record of one client request as it moves through the gateway, and its outcome classes.

One `Exchange` is created per request and handed to the recorder at the end; everything that
observes traffic (Prometheus, the live store, access logs) reads it, nothing else is shared.
Outcome classes say whose fault a failure was: only upstream-caused classes count against a
version (client errors and cancellations never do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

SUCCESS = "success"
CLIENT_ERROR = "client_error"
CLIENT_CANCEL = "client_cancel"
RATE_LIMITED = "rate_limited"  # the upstream answered 429
THROTTLED = "throttled"  # the gateway's own per-key rate limit answered 429
UPSTREAM_ERROR = "upstream_error"
TIMEOUT = "timeout"
CONNECT_ERROR = "connect_error"
STREAM_CUT = "stream_cut"
REJECTED = "rejected"

OUTCOMES = (
    SUCCESS,
    CLIENT_ERROR,
    CLIENT_CANCEL,
    RATE_LIMITED,
    THROTTLED,
    UPSTREAM_ERROR,
    TIMEOUT,
    CONNECT_ERROR,
    STREAM_CUT,
    REJECTED,
)
VERSION_FAILURES = frozenset({UPSTREAM_ERROR, TIMEOUT, CONNECT_ERROR, STREAM_CUT})


@dataclass(slots=True)
class Attempt:
    """One upstream call made for a request: what the version itself did (its health record)."""

    version: str
    started: float
    stream: bool
    outcome: str = SUCCESS
    status: int = 0
    ttft: float | None = None  # seconds from sending to the first upstream byte
    duration: float = 0.0  # seconds from sending to the end of the upstream answer
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class Exchange:
    request_id: str
    path: str
    started: float
    model: str | None = None  # a configured model name, or None before resolution
    version: str | None = None  # the version that served (or failed) last
    status: int = 0
    outcome: str = SUCCESS
    stream: bool = False
    ttft: float | None = None  # seconds from arrival to the first byte sent to the client
    duration: float = 0.0
    upstream_wait: float = 0.0  # seconds spent waiting on the upstream (for gateway overhead)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    routing_reason: str = ""
    assigned: str | None = None  # the version routing chose first (the canary's evidence arm)
    session: str | None = None  # canary split with a sticky key: its hash ("" for no key)
    client: str = ""  # the API key's id (never the key); "" until authenticated
    reason: str = ""  # why the gateway itself refused the request (overloaded, request_too_large)
    metered: bool = True  # False: usage in the answer was already counted (GET of a response)
    holds_slot: bool = False  # counted in its key's in-flight requests (released at the end)
    open_ended: bool = False  # no output cap on a token-limited key (its size is learnt)
    holds_turn: bool = False  # holds its key's open-ended turn (released once settled)
    strip_usage: bool = False  # the gateway asked for the stream's usage chunk: not relayed
    request_bytes: int = 0  # the request body's size (for a token estimate)
    relayed_bytes: int = 0  # answer bytes relayed to the client (for a token estimate)
    attempts: list[Attempt] = field(default_factory=list)
    trace: RequestTrace | None = None  # the request's spans, with tracing on


class AttemptTrace(Protocol):
    """The span of one upstream attempt (`gateway.observability.tracing`)."""

    def inject(self, headers: list[tuple[str, str]]) -> None:
        """Replace any `traceparent`/`tracestate` in the upstream headers with this span's."""
        ...

    def end(self, attempt: Attempt) -> None: ...


class RequestTrace(Protocol):
    """The spans of one client request: a server span and a client span per attempt."""

    def routed(self, order: tuple[str, ...]) -> None:
        """The routing decision: the versions to try, in order (the reason is on the exchange)."""
        ...

    def retried(self, reason: str, version: str) -> None:
        """The next attempt, on `version`, is a retry after a failure of kind `reason`."""
        ...

    def attempt(self, attempt: Attempt, upstream_model: str, url: str) -> AttemptTrace: ...

    def end(self, ex: Exchange) -> None: ...
