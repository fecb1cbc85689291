"""The SSE relay: bytes pass unchanged, framing survives cuts, failures end with an error event."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator

import pytest

from gateway.errors import UpstreamError
from gateway.exchange import STREAM_CUT, SUCCESS, TIMEOUT, Exchange
from gateway.proxy.decode import decoded, decoding
from gateway.proxy.sse import observe_usage_json, sse_error
from tests.streams import DONE, EVENT, USAGE, body, gen, relay


async def test_healthy_stream_is_relayed_byte_for_byte() -> None:
    ex, sent = await relay(EVENT, gen(EVENT, USAGE, DONE))
    assert body(sent) == EVENT * 2 + USAGE + DONE
    assert len(sent) == 5  # each chunk forwarded as it came, then the end
    assert ex.outcome == SUCCESS and ex.ttft is not None
    assert (ex.prompt_tokens, ex.completion_tokens) == (7, 3)


async def test_partial_events_are_held_until_complete() -> None:
    half = len(EVENT) // 2
    ex, sent = await relay(EVENT[:half], gen(EVENT[half:] + EVENT[:3], EVENT[3:] + DONE))
    assert body(sent) == EVENT * 2 + DONE
    assert ex.outcome == SUCCESS


async def test_end_without_done_adds_an_error_event() -> None:
    ex, sent = await relay(EVENT, gen(EVENT))
    data = body(sent)
    assert data.startswith(EVENT * 2)
    error = json.loads(data[len(EVENT) * 2 :].removeprefix(b"data: "))
    assert error["error"]["code"] == "upstream_disconnect"
    assert ex.outcome == STREAM_CUT


async def test_cut_mid_event_never_sends_the_half_event() -> None:
    ex, sent = await relay(EVENT, gen(EVENT[:10]))
    data = body(sent)
    assert data == EVENT + sse_error(
        "upstream ended the stream early", "upstream_error", "upstream_disconnect"
    )
    assert ex.outcome == STREAM_CUT


async def test_broken_upstream_ends_with_an_error_event() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield EVENT
        raise ConnectionResetError("reset")

    ex, sent = await relay(EVENT, broken())
    assert b'"upstream_disconnect"' in sent[-1]["body"] and ex.outcome == STREAM_CUT


async def test_idle_stall_times_out_with_an_error_event() -> None:
    ex, sent = await relay(EVENT, gen(EVENT, stall=1.0), idle=0.05)
    assert b'"upstream_timeout"' in sent[-1]["body"]
    assert ex.outcome == TIMEOUT


async def test_oversized_event_is_refused() -> None:
    ex, sent = await relay(b"data: " + b"x" * (1 << 20), gen(b"x" * 100))
    assert ex.outcome == STREAM_CUT and b"larger than 1 MiB" in sent[-1]["body"]


async def test_secret_is_redacted_from_events_even_split_across_chunks() -> None:
    key = b"sk-UPSTREAM-0123456789"
    leak = b'data: {"choices":[{"delta":{"content":"Bearer ' + key + b'"}}]}\n\n'
    ex, sent = await relay(leak[:40], gen(leak[40:], EVENT, DONE), secret=key)
    relayed = body(sent)
    assert key not in relayed and key[:8] not in relayed and b"[redacted]" in relayed
    assert relayed.endswith(EVENT + DONE) and ex.outcome == SUCCESS


async def test_compressed_stream_is_decoded_then_checked_and_redacted() -> None:
    key = b"sk-UPSTREAM-0123456789"
    packed = gzip.compress(b'data: {"k":"' + key + b'"}\n\n' + USAGE + DONE)
    decoder = decoding(b"gzip")
    ex, sent = await relay(b"", decoded(gen(packed[:10], packed[10:]), decoder), secret=key)
    relayed = body(sent)
    assert key not in relayed and relayed.endswith(USAGE + DONE) and ex.outcome == SUCCESS
    assert (ex.prompt_tokens, ex.completion_tokens) == (7, 3)


async def test_compression_bomb_and_unknown_coding_are_refused() -> None:
    bomb = gzip.compress(b"data: " + b"x" * (4 << 20))
    with pytest.raises(UpstreamError, match="once decoded"):
        [chunk async for chunk in decoded(gen(bomb), decoding(b"gzip"), 1 << 20)]
    with pytest.raises(UpstreamError, match="content-encoding"):
        decoding(b"br")


async def test_crlf_framed_events_and_chunks_without_any_boundary() -> None:
    crlf = EVENT.replace(b"\n", b"\r\n")
    ex, sent = await relay(b"da", gen(b"ta: {}", crlf[4:], DONE))
    assert body(sent) == b"data: {}" + crlf[4:] + DONE
    assert ex.outcome == SUCCESS


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        (b'{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}', (3, 4)),
        (b'{"usage":{"prompt_tokens":3,"completion_tokens":4},"id":"x"}\n', (3, 4)),
        (b'{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4}}\n', (3, 4)),
        (b' {"usage":{"prompt_tokens":3,"completion_tokens":4}}', (3, 4)),
        # a nested "usage" last: never taken for the top-level one
        (b'{"usage":{"prompt_tokens":3},"x":{"usage":{"prompt_tokens":9}}}', (3, 0)),
        (b'{"x":[{"usage":{"prompt_tokens":9}}]}', (0, 0)),
        (b'[{"usage":{"prompt_tokens":9}}]', (0, 0)),
        # the name inside a string is escaped, so it is never mistaken for a member
        (b'{"text":"say \\"usage\\":{\\"prompt_tokens\\":9}","usage":null}', (0, 0)),
        (b'{"usage":{"prompt_tokens":3}} trailing', (0, 0)),
        (b'{"usage": {"prompt_tokens": 3, "completion_tokens": 1}}', (3, 1)),
    ],
)
def test_usage_is_read_from_the_top_level_object_only(body: bytes, tokens: tuple[int, int]) -> None:
    ex = Exchange("r", "/v1/chat/completions", 0.0)
    observe_usage_json(body, ex)
    assert (ex.prompt_tokens, ex.completion_tokens) == tokens
