"""The record of one client request as it moves through the gateway, and its outcome classes.

One `Exchange` is created per request and handed to the recorder at the end; everything that
observes traffic (Prometheus, the live store, access logs) reads it, nothing else is shared.
Outcome classes say whose fault a failure was: only upstream-caused classes count against a
version (client errors and cancellations never do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

SUCCESS = "success"
CLIENT_ERROR = "client_error"
CLIENT_CANCEL = "client_cancel"
RATE_LIMITED = "rate_limited"
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
    UPSTREAM_ERROR,
    TIMEOUT,
    CONNECT_ERROR,
    STREAM_CUT,
    REJECTED,
)
VERSION_FAILURES = frozenset({UPSTREAM_ERROR, TIMEOUT, CONNECT_ERROR, STREAM_CUT})


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


class Recorder(Protocol):
    def record(self, ex: Exchange) -> None: ...
