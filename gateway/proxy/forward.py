"""Doing a route plan: send the request to the chosen version and relay its answer.

Owns the attempt: rewriting `model` to the upstream's name, the upstream headers, the timeouts
(connect, time to first byte, idle between chunks, total), and the answer's relay: streams through
`SseRelay`, other bodies read whole (capped) and sent with their length. Any failure before the
first byte reaches the client raises an `UpstreamError` (so the caller answers 502/504); after
that, failures are reported in-band by the relay. The upstream connection is always either
returned to the pool (answer fully read) or closed (anything else, including cancellation).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from time import perf_counter
from typing import Any, Protocol

import orjson
from starlette.types import Send

from gateway.config.routes import Timeouts
from gateway.config.schema import Limits
from gateway.errors import UpstreamError, UpstreamReset, UpstreamStatus, UpstreamTimeout
from gateway.exchange import (
    CLIENT_CANCEL,
    CLIENT_ERROR,
    RATE_LIMITED,
    SUCCESS,
    UPSTREAM_ERROR,
    Attempt,
    Exchange,
)
from gateway.proxy.deadline import Deadline, DeadlineWheel
from gateway.proxy.decode import Decoder, decoded, decoding
from gateway.proxy.headers import to_client, to_upstream
from gateway.proxy.sse import SseRelay, observe_usage_json, redact
from gateway.proxy.upstream import Body, Transport, UpstreamResponse
from gateway.routing.table import VersionEntry

Hold = Callable[[int, float | None], bool]
USAGE_PARSE_LIMIT = 256 << 10


class Outgoing(Protocol):
    """A request relayed as it came rather than as a JSON body with `model` rewritten: a call
    on a response id (`GET /v1/responses/{id}`) or a multipart upload streamed through."""

    method: str
    replayable: bool  # can a second attempt send it again (False once a stream is consumed)

    def target(self, version: VersionEntry, path: str) -> tuple[str, Body | None, int | None]:
        """The upstream URL, the body, and its length if known (else it is sent chunked)."""
        ...


class Forwarder:
    """One per process: the transport plus the per-attempt logic."""

    def __init__(self, transport: Transport | None) -> None:
        self.transport = transport  # opened by the app's lifespan, inside the event loop
        self.deadlines = DeadlineWheel()

    async def close(self) -> None:
        if self.transport is not None:
            await self.transport.aclose()
            self.transport = None

    async def attempt(
        self,
        ex: Exchange,
        version: VersionEntry,
        payload: dict[str, Any] | Outgoing,
        client_headers: Sequence[tuple[bytes, bytes]],
        send: Send,
        timeouts: Timeouts,
        limits: Limits,
        hold: Hold | None = None,
    ) -> None:
        """Serve `ex` from `version`, or raise `UpstreamError` with nothing sent to the client.

        `hold(status, retry_after)` says whether a 5xx/429 answer should be held back (raised as
        `UpstreamStatus`) because another version will be tried; otherwise it is relayed.
        """
        ex.version = version.id
        attempt = Attempt(version.id, perf_counter(), ex.stream)
        ex.attempts.append(attempt)
        headers = to_upstream(
            client_headers, version.api_key, ex.request_id, version.forward_headers
        )
        span = None
        if ex.trace is not None:  # tracing on (off: this one check)
            url = version.urls.get(ex.path, version.base_url)
            span = ex.trace.attempt(attempt, version.upstream_model, url)
            span.inject(headers)
        deadline = self.deadlines.start(timeouts.ttft_s, timeouts.idle_s, timeouts.total_s)
        resp: UpstreamResponse | None = None
        finished = False
        try:
            with deadline:
                assert self.transport is not None, "the app's lifespan opens the transport"
                if type(payload) is dict:
                    payload["model"] = version.upstream_model
                    resp = await self.transport.post(
                        version.urls[ex.path], headers, orjson.dumps(payload), timeouts.connect_s
                    )
                else:
                    resp = await _outgoing(self.transport, payload, ex, version, headers, timeouts)
                await _relay(ex, attempt, version, resp, send, deadline, limits, hold)
            finished = True
        except TimeoutError:
            err = UpstreamTimeout(deadline.reason())
            attempt.outcome = err.outcome
            raise err from None
        except UpstreamError as err:
            attempt.outcome = err.outcome
            attempt.status = getattr(err, "upstream_status", 0)
            raise
        except asyncio.CancelledError:
            attempt.outcome = CLIENT_CANCEL
            raise
        finally:
            deadline.stop()
            attempt.duration = perf_counter() - attempt.started
            if finished:
                attempt.outcome, attempt.status = ex.outcome, ex.status
                attempt.prompt_tokens = ex.prompt_tokens
                attempt.completion_tokens = ex.completion_tokens
            if resp is not None:
                resp.release() if finished else resp.close()
            if span is not None:
                span.end(attempt)


async def _outgoing(
    transport: Transport,
    outgoing: Any,
    ex: Exchange,
    version: VersionEntry,
    headers: list[tuple[str, str]],
    timeouts: Timeouts,
) -> UpstreamResponse:
    url, body, length = outgoing.target(version, ex.path)
    if length is not None:
        headers.append(("content-length", str(length)))
    return await transport.request(outgoing.method, url, headers, body, timeouts.connect_s)


async def _relay(
    ex: Exchange,
    attempt: Attempt,
    version: VersionEntry,
    resp: UpstreamResponse,
    send: Send,
    deadline: Deadline,
    limits: Limits,
    hold: Hold | None,
) -> None:
    status = resp.status
    if not 200 <= status < 300 and not 400 <= status < 600:
        raise UpstreamError(f"upstream answered with unexpected status {status}")
    if hold is not None and (status >= 500 or status == 429):
        retry_after = _retry_after(resp.raw_headers)
        if hold(status, retry_after):
            raise UpstreamStatus(status, retry_after)
    head, content_type, encoding = to_client(resp.raw_headers)
    head.append((b"x-request-id", ex.request_id.encode()))
    head.extend(version.response_headers)
    decoder = None if encoding in (b"", b"identity") else decoding(encoding)
    limit = limits.max_response_bytes
    if status == 200 and content_type.startswith(b"text/event-stream"):
        chunks = resp.chunks() if decoder is None else decoded(resp.chunks(), decoder, limit)
        await _relay_stream(ex, attempt, chunks, head, send, deadline, version.secret)
        return
    if decoder is None and resp.content_length is not None and resp.content_length <= limit:
        body = await resp.read()  # read up to the declared length (the common case: one await)
    else:
        body = await _read_all(resp, limit, decoder)
    attempt.ttft = ex.upstream_wait = perf_counter() - attempt.started  # the whole answer
    secret = version.secret
    if secret and secret[:8] in body:  # one scan when there is nothing to blank out
        body = redact(body, secret)
    ex.status = status
    ex.outcome = _outcome(status)
    if status == 200 and len(body) <= USAGE_PARSE_LIMIT and ex.metered:
        observe_usage_json(body, ex)
    ex.relayed_bytes = len(body)
    head.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": status, "headers": head})
    ex.ttft = perf_counter() - ex.started
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _relay_stream(
    ex: Exchange,
    attempt: Attempt,
    chunks: AsyncIterator[bytes],
    head: list[tuple[bytes, bytes]],
    send: Send,
    deadline: Deadline,
    secret: bytes,
) -> None:
    first = await anext(chunks, b"")
    attempt.ttft = ex.upstream_wait = perf_counter() - attempt.started
    deadline.idle()
    if not first:
        raise UpstreamReset("upstream sent an empty stream")
    ex.status = 200
    await send({"type": "http.response.start", "status": 200, "headers": head})
    await SseRelay(ex, send, perf_counter, secret).run(first, chunks, deadline)


async def _read_all(resp: UpstreamResponse, limit: int, decoder: Decoder | None) -> bytes:
    """A body of undeclared length (or declared too large, or compressed), refused past `limit`
    bytes (decoded)."""
    if resp.content_length is not None and decoder is None:
        raise UpstreamError(f"upstream answer larger than {limit} bytes")
    parts: list[bytes] = []
    size = 0
    chunks = resp.chunks() if decoder is None else decoded(resp.chunks(), decoder, limit)
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise UpstreamError(f"upstream answer larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _outcome(status: int) -> str:
    if status < 400:
        return SUCCESS
    if status == 429:
        return RATE_LIMITED
    return CLIENT_ERROR if status < 500 else UPSTREAM_ERROR


def _retry_after(headers: Sequence[tuple[bytes, bytes]]) -> float | None:
    """The upstream's Retry-After in seconds (delta form only), if it sent a usable one."""
    for name, value in headers:
        if name.lower() == b"retry-after":
            try:
                return max(float(value), 0.0)
            except ValueError:
                return None
    return None
