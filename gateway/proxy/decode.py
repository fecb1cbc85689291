"""Undoing an upstream's content coding before anything inspects, redacts or relays its answer.

The gateway asks every upstream for `identity` (docs/security.md): a compressed answer could not
be searched for the upstream credential, nor read for `usage`. An upstream that compresses
anyway has its `gzip` or `deflate` answer decoded here (incrementally, for streams, and never
far past the response size limit); any other coding is refused as an upstream error.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Protocol

from gateway.errors import UpstreamError

_WBITS = {
    b"gzip": 16 + zlib.MAX_WBITS,
    b"x-gzip": 16 + zlib.MAX_WBITS,
    b"deflate": zlib.MAX_WBITS,
}


class Decoder(Protocol):
    """What `zlib.decompressobj` returns (the part used here)."""

    @property
    def unconsumed_tail(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = 0, /) -> bytes: ...

    def flush(self, length: int = ..., /) -> bytes: ...


def decoding(encoding: bytes) -> Decoder:
    """A decoder for an upstream's `content-encoding`, or `UpstreamError` if it is not one the
    gateway can undo."""
    wbits = _WBITS.get(encoding.strip().lower())
    if wbits is None:
        raise UpstreamError(f"upstream answered with unsupported content-encoding {encoding!r}")
    return zlib.decompressobj(wbits)


async def decoded(
    chunks: AsyncIterator[bytes], decoder: Decoder, limit: int = 1 << 62
) -> AsyncIterator[bytes]:
    """`chunks` decoded; `UpstreamError` on corrupt data or more than `limit` decoded bytes
    (checked per chunk, so a small compressed chunk cannot expand without bound)."""
    try:
        async for chunk in chunks:
            out = decoder.decompress(chunk, limit + 1)
            if len(out) > limit or decoder.unconsumed_tail:
                raise UpstreamError(f"upstream answer larger than {limit} bytes once decoded")
            if out:
                yield out
        tail = decoder.flush()
    except zlib.error as exc:
        raise UpstreamError(f"upstream sent a corrupt compressed answer: {exc}") from None
    if tail:
        yield tail
