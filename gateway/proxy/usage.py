"""Token usage the limits can rely on, whatever the upstream reports (docs/security.md).

Owns three things: asking for usage on streamed chat/completions requests whose client did not
(`stream_options.include_usage: true`, marked on the exchange), taking the extra usage-only
chunk that brings back out of the relayed stream, and an estimate when an answer still carried
no usage: the prompt at one token per 4 request bytes and the output at one token per 4 bytes
relayed (framing included, so an over- rather than an under-estimate). Never a silent default.
"""

from __future__ import annotations

from typing import Any

from gateway.exchange import Exchange

BYTES_PER_TOKEN = 4
_EMPTY_CHOICES = (b'"choices":[]', b'"choices": []')


def ask_for_usage(fields: dict[str, Any], ex: Exchange) -> None:
    """Make a streamed request ask for its usage chunk; remember to strip it if the client did
    not ask for it itself."""
    options = fields.get("stream_options")
    if isinstance(options, dict):
        if options.get("include_usage") is True:
            return
        fields["stream_options"] = {**options, "include_usage": True}
    elif options is None:
        fields["stream_options"] = {"include_usage": True}
    else:
        return  # malformed: the upstream answers it as it would have
    ex.strip_usage = True


def strip_usage_events(events: bytes) -> bytes:
    """`events` (whole SSE events) without the usage-only chunk (`choices` empty, `usage` set)."""
    sep = b"\r\n\r\n" if b"\r\n\r\n" in events else b"\n\n"
    kept = [
        event
        for event in events.split(sep)
        if not (b'"usage"' in event and any(empty in event for empty in _EMPTY_CHOICES))
    ]
    return sep.join(kept)


def estimate_usage(ex: Exchange) -> None:
    """Usage for an answer that reported none (or one the gateway could not read)."""
    ex.prompt_tokens = ex.request_bytes // BYTES_PER_TOKEN
    ex.completion_tokens = max(1, ex.relayed_bytes // BYTES_PER_TOKEN)
