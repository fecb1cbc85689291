"""The trace of a request that is not sampled: no span, only the W3C context passed upstream.

With `tracing.sample_ratio` set, the gateway decides for each request before the OpenTelemetry
SDK is involved: an incoming `traceparent` keeps its own decision (its sampled flag), a new trace
is kept with probability `sample_ratio`. A request not kept costs a header parse and two random
numbers (the SDK's non-recording spans cost about ten times that, `bench/RESULTS.md`); it still
tells the upstream it is part of an unsampled trace, as the SDK would: the incoming trace id (or a
new one) with a fresh parent id per attempt and the sampled flag off, and any `tracestate`.
"""

from __future__ import annotations

import re
from random import Random

from gateway.exchange import Attempt, AttemptTrace, Exchange

TRACEPARENT = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _valid(traceparent: bytes | None) -> re.Match[bytes] | None:
    m = TRACEPARENT.fullmatch(traceparent.strip()) if traceparent else None
    return m if m and int(m.group(1), 16) and int(m.group(2), 16) else None  # all-zero ids


def parent_sampled(traceparent: bytes | None) -> bool | None:
    """The sampled flag of a valid version-00 `traceparent`; None without a valid one."""
    m = _valid(traceparent)
    return None if m is None else bool(int(m.group(3), 16) & 1)


class UnsampledTrace:
    """`gateway.exchange.RequestTrace` and `AttemptTrace` of a request no span is recorded for."""

    __slots__ = ("_rng", "_state", "_trace_id")

    def __init__(self, traceparent: bytes | None, tracestate: bytes | None, rng: Random) -> None:
        m = _valid(traceparent)
        self._trace_id = m.group(1).decode() if m else f"{rng.getrandbits(128) or 1:032x}"
        self._state = tracestate.decode("latin-1") if m and tracestate else None
        self._rng = rng

    def routed(self, order: tuple[str, ...]) -> None:
        pass

    def retried(self, reason: str, version: str) -> None:
        pass

    def attempt(self, attempt: Attempt, upstream_model: str, url: str) -> AttemptTrace:
        return self

    def inject(self, headers: list[tuple[str, str]]) -> None:
        headers[:] = [(n, v) for n, v in headers if n not in ("traceparent", "tracestate")]
        span_id = self._rng.getrandbits(64) or 1
        headers.append(("traceparent", f"00-{self._trace_id}-{span_id:016x}-00"))
        if self._state:
            headers.append(("tracestate", self._state))

    def end(self, _: Exchange | Attempt) -> None:
        pass
