"""Relaying a server-sent-event stream from an upstream to the client, chunk by chunk.

Bytes are forwarded as they arrive, never re-serialised. The relay only holds back an incomplete
trailing event (so a cut can never leave the client with half an event glued to our error), checks
for the terminal event (`data: [DONE]`; for the Responses API's typed events `response.completed`,
`response.failed`, `response.incomplete` or `error`; for audio streams their `.done` event), and
reads `usage` in passing (`prompt_tokens`/`completion_tokens`, or the Responses API's
`input_tokens`/`output_tokens`, also inside a `response.completed` event). A stream that ends
without its terminal event, breaks, or stalls past the idle timeout ends with one SSE error event
(which the `openai` SDK raises as an `APIError`) and never with a silent clean end. The upstream
credential is blanked out of every event relayed (events go out whole, so a key split across
chunks is still found).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.types import Send

from gateway.exchange import STREAM_CUT, TIMEOUT, Exchange
from gateway.proxy.deadline import Deadline
from gateway.proxy.usage import strip_usage_events

MAX_EVENT_BYTES = 1 << 20
USAGE_MEMBER = b'"usage":'
DONE = (b"[DONE]",)


def _typed(*types: str) -> tuple[bytes, ...]:
    """Markers of typed terminal events: the `event:` line, or the compact `type` member."""
    return tuple(m for t in types for m in (b"event: " + t.encode(), b'"type":"%s"' % t.encode()))


# gateway path -> what marks the end of its streams (default: `data: [DONE]`)
TERMINAL = {
    "/v1/responses": _typed(
        "response.completed", "response.failed", "response.incomplete", "error"
    ),
    "/v1/audio/speech": _typed("speech.audio.done", "error"),
    "/v1/audio/transcriptions": _typed("transcript.text.done", "error"),
}


def sse_error(message: str, type_: str, code: str) -> bytes:
    """One terminal SSE event in OpenAI's error shape."""
    return (
        b"data: "
        + orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})
        + b"\n\n"
    )


def _event_end(data: bytes) -> int:
    """Index just past the last complete SSE event in `data`, or 0 if there is none."""
    lf, crlf = data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


class SseRelay:
    """Forwards one upstream SSE body; `run` returns when the stream is over, one way or another."""

    __slots__ = ("_carry", "_clock", "_done", "_ex", "_markers", "_secret", "_send")

    def __init__(
        self, ex: Exchange, send: Send, clock: Callable[[], float], secret: bytes = b""
    ) -> None:
        self._ex = ex
        self._send = send
        self._clock = clock
        self._carry = b""
        self._done = False
        self._markers = TERMINAL.get(ex.path, DONE)
        self._secret = secret  # the upstream credential, blanked out of every relayed event

    async def forward(self, chunk: bytes) -> None:
        data = self._carry + chunk if self._carry else chunk
        end = _event_end(data)
        self._carry = data[end:]
        if len(self._carry) > MAX_EVENT_BYTES:
            raise ValueError("upstream sent an SSE event larger than 1 MiB")
        if not end:
            return
        events = data[:end] if end < len(data) else data
        if self._secret and self._secret[:8] in events:  # whole events only: never split
            events = redact(events, self._secret)
        for marker in self._markers:
            if marker in events:
                self._done = True
        ex = self._ex
        if b'"usage"' in events:
            if ex.metered:
                _observe_usage(events, ex)
            if ex.strip_usage:  # the gateway asked for this chunk, the client did not
                events = strip_usage_events(events)
                if not events:
                    return
        ex.relayed_bytes += len(events)
        if self._ex.ttft is None:
            self._ex.ttft = self._clock() - self._ex.started
        await self._send({"type": "http.response.body", "body": events, "more_body": True})

    async def run(self, first: bytes, rest: AsyncIterator[bytes], deadline: Deadline) -> None:
        """Relay `first`, then `rest`, under the attempt's idle and total deadlines."""
        try:
            with deadline:
                await self.forward(first)
                async for chunk in rest:
                    await self.forward(chunk)
                    deadline.progress()
        except TimeoutError:
            await self._fail(
                TIMEOUT, "upstream stream stalled (idle or total timeout)", "upstream_timeout"
            )
            return
        except Exception as exc:  # a cut or malformed stream: report it in-band
            await self._fail(STREAM_CUT, f"upstream stream broken: {exc}", "upstream_disconnect")
            return
        if self._carry or not self._done:
            await self._fail(STREAM_CUT, "upstream ended the stream early", "upstream_disconnect")
            return
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _fail(self, outcome: str, message: str, code: str) -> None:
        self._ex.outcome = outcome
        # Held-back partial events were never sent, so the client's framing is intact here.
        event = sse_error(message, "upstream_error", code)
        await self._send({"type": "http.response.body", "body": event, "more_body": False})


def redact(body: bytes, key: bytes) -> bytes:
    """`body` with the upstream credential `key` (and any 8-character prefix of it) blanked out:
    an upstream that echoes our request must not hand the key to the client."""
    body = body.replace(key, b"[redacted]")
    return body.replace(key[:8], b"[redacted]") if len(key) >= 8 else body


def _last_member_usage(body: bytes) -> Any:
    """The value of `usage` when it is the last member of the top-level object (where
    OpenAI-compatible servers put it), parsed alone; None if that is not the case.

    `"usage":` can only be a member name (a quote inside a JSON string is escaped), and a member
    nested deeper is followed by its own container's closing bracket before the top level's
    `}`, so the slice between the last `"usage":` and the final `}` parses only for a top-level
    last member. Anything else (None) falls back to parsing the whole object."""
    start = body.rfind(USAGE_MEMBER)
    end = body.rfind(b"}")
    if start < 0 or not body.startswith(b"{") or body[end + 1 :].strip():
        return None
    try:
        return orjson.loads(body[start + len(USAGE_MEMBER) : end])
    except orjson.JSONDecodeError:
        return None


def _observe_usage(events: bytes, ex: Exchange) -> None:
    for line in events.split(b"\n"):
        if line.startswith(b"data:") and b'"usage"' in line:
            observe_usage_json(line[5:].strip(), ex)


def observe_usage_json(body: bytes, ex: Exchange) -> None:
    """Copy `usage` token counts from one JSON object into `ex`; ignore anything malformed."""
    try:
        usage = _last_member_usage(body)
        if usage is None:
            obj = orjson.loads(body)
            usage = obj.get("usage")
            if usage is None and isinstance(obj.get("response"), dict):
                usage = obj["response"].get("usage")  # a Responses event: response.completed
        get = usage.get
        ex.prompt_tokens = int(get("prompt_tokens") or get("input_tokens") or 0)
        ex.completion_tokens = int(get("completion_tokens") or get("output_tokens") or 0)
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        pass
