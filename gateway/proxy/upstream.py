"""The upstream transport: the single plug point through which every upstream call goes.

Owns the pooled HTTP client (one per process, opened and closed by the app's lifespan) and the
mapping of the client library's exceptions onto the gateway's error tree — nowhere else sees an
aiohttp exception. aiohttp carries the traffic because, as a pass-through client, it measured
several times faster than httpx's default transport (docs/performance.md); `Transport` is the
small interface the data path depends on, so another client can be dropped in behind it.
Bodies are relayed raw (no decompression); redirects are never followed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from types import TracebackType
from typing import Protocol

import aiohttp

from gateway.errors import UpstreamConnectError, UpstreamReset

Headers = Sequence[tuple[str, str]]
Body = bytes | AsyncIterable[bytes]  # whole, or streamed as it arrives from the client


class UpstreamResponse(Protocol):
    status: int
    raw_headers: tuple[tuple[bytes, bytes], ...]
    content_length: int | None  # as declared by the upstream; None for chunked answers

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

    def close(self) -> None: ...

    def release(self) -> None: ...


class Transport(Protocol):
    async def post(
        self, url: str, headers: Headers, body: bytes, connect_s: float
    ) -> UpstreamResponse: ...

    async def request(
        self, method: str, url: str, headers: Headers, body: Body | None, connect_s: float
    ) -> UpstreamResponse:
        """Any other call: another method, or a body streamed from the client."""
        ...

    async def aclose(self) -> None: ...


class _BodyErrors:
    """Maps a failure while reading an answer's body onto `UpstreamReset` (a class, not a
    generator-based context manager: it is on every request's path)."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, aiohttp.ClientPayloadError):
            raise UpstreamReset(f"upstream body broken: {_reason(exc)}") from None
        if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError):
            raise UpstreamReset(f"upstream connection lost: {_reason(exc)}") from None


BODY_ERRORS = _BodyErrors()


class AiohttpResponse:
    """An upstream answer; iterating `chunks()` yields body bytes as they arrive."""

    __slots__ = ("_resp", "content_length", "raw_headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.raw_headers = resp.raw_headers
        self.content_length = resp.content_length

    async def read(self) -> bytes:
        """The whole body (only for answers with a declared length: it is read up to it)."""
        with BODY_ERRORS:
            return await self._resp.read()

    async def chunks(self) -> AsyncIterator[bytes]:
        with BODY_ERRORS:
            async for chunk in self._resp.content.iter_any():
                yield chunk

    def close(self) -> None:
        """Drop the connection (the upstream sees it close): for aborted or unread answers."""
        self._resp.close()

    def release(self) -> None:
        """Return the connection to the pool after the body was read to its end."""
        self._resp.release()


class AiohttpTransport:
    """A pooled aiohttp session; create inside the running event loop."""

    def __init__(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}  # one per configured connect_s

    async def post(
        self, url: str, headers: Headers, body: bytes, connect_s: float
    ) -> UpstreamResponse:
        """The data path's call (kept apart from `request`: one frame fewer per request)."""
        try:
            resp = await self._session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout(connect_s),
            )
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise _mapped(exc, connect_s) from None
        return AiohttpResponse(resp)

    async def request(
        self, method: str, url: str, headers: Headers, body: Body | None, connect_s: float
    ) -> UpstreamResponse:
        try:
            resp = await self._session.request(
                method,
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout(connect_s),
            )
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise _mapped(exc, connect_s) from None
        return AiohttpResponse(resp)

    def _timeout(self, connect_s: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(connect_s)
        if timeout is None:
            timeout = self._timeouts[connect_s] = aiohttp.ClientTimeout(sock_connect=connect_s)
        return timeout

    async def aclose(self) -> None:
        await self._session.close()
        await asyncio.sleep(0)


def _mapped(exc: BaseException, connect_s: float) -> UpstreamConnectError | UpstreamReset:
    """A failure before the upstream answered, as the gateway's error."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamConnectError(f"upstream connect timed out after {connect_s:g}s")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError(f"upstream unreachable: {_reason(exc)}")
    return UpstreamReset(f"upstream failed before answering: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """A short cause without URLs or headers (they could carry secrets)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.os_error.strerror or type(exc.os_error).__name__
    return type(exc).__name__
