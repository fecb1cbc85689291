"""Shared helpers for the `test_resilience_*` modules (this module holds no tests).

- `scrape(gw)` / `Scrape.value(name, **labels)`: the gateway's Prometheus metrics, summed over
  the samples whose labels match.
- `send(...)` / `load(...)`: an httpx-based asyncio driver that records, per request, the status,
  headers, raw body, first-byte time and end time; `Result` parses SSE events out of the body.
  `BackgroundLoad` does the same from client threads until stopped (load while a test acts).
- `RawClient`: a keep-alive HTTP/1.1 client on a bare asyncio stream, for the latency assertions
  (a few microseconds of client overhead instead of httpx's milliseconds on a shared 2-core box).
- `chat_config(...)`: a one-model gateway config with the versions, weights and routing given.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Gateway

CHAT = "/v1/chat/completions"
_ids = itertools.count()


def request_id(prefix: str = "r") -> str:
    return f"{prefix}-{next(_ids)}"


# -- metrics -------------------------------------------------------------------------------


@dataclass
class Scrape:
    samples: list[tuple[str, dict[str, str], float]]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples called `name` whose labels include `labels`."""
        return sum(
            v
            for n, ls, v in self.samples
            if n == name and all(ls.get(k) == want for k, want in labels.items())
        )


def scrape(gw: Gateway) -> Scrape:
    text = httpx.get(gw.base + "/metrics", timeout=5).text
    samples = [
        (s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]
    return Scrape(samples)


# -- httpx driver --------------------------------------------------------------------------


@dataclass
class Result:
    request_id: str
    stream: bool
    started: float
    status: int = 0  # 0: no HTTP answer at all (refused, reset, timed out)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    first_byte: float | None = None
    ended: float = 0.0
    error: str = ""  # the client-side exception, if any
    chunks: list[bytes] = field(default_factory=list)  # raw body pieces as they arrived
    chunk_times: list[float] = field(default_factory=list)

    def add(self, chunk: bytes) -> None:
        """One raw body piece, as it arrived."""
        now = time.monotonic()
        if self.first_byte is None:
            self.first_byte = now
        self.chunk_times.append(now)
        self.chunks.append(chunk)

    def finish(self) -> Result:
        self.body = b"".join(self.chunks)
        self.ended = time.monotonic()
        return self

    @property
    def version(self) -> str | None:
        return self.headers.get("x-gateway-version")

    @property
    def revision(self) -> str | None:
        return self.headers.get("x-gateway-config-revision")

    @property
    def elapsed(self) -> float:
        return self.ended - self.started

    def events(self) -> list[bytes]:
        """The `data:` payloads of an SSE body, in order."""
        out = []
        for block in self.body.split(b"\n\n"):
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    out.append(line[5:].strip())
        return out

    @property
    def done(self) -> bool:
        events = self.events()
        return bool(events) and events[-1] == b"[DONE]"

    def error_events(self) -> list[dict[str, Any]]:
        return [json.loads(e)["error"] for e in self.events() if e.startswith(b'{"error"')]

    @property
    def ok(self) -> bool:
        """Client-visible success: 2xx, and a stream that ends with `[DONE]` and no error."""
        if not 200 <= self.status < 300 or self.error:
            return False
        return not self.stream or (self.done and not self.error_events())


async def send(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    rid: str | None = None,
    path: str = CHAT,
) -> Result:
    rid = rid or request_id()
    result = Result(rid, body.get("stream") is True, time.monotonic())
    try:
        async with client.stream(
            "POST", path, json=body, headers={"x-request-id": rid, **(headers or {})}
        ) as resp:
            result.status = resp.status_code
            result.headers = {k.lower(): v for k, v in resp.headers.items()}
            async for chunk in resp.aiter_raw():
                result.add(chunk)
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result.finish()


async def load(
    base: str,
    n: int,
    concurrency: int,
    make: Callable[[int], tuple[dict[str, Any], dict[str, str]]],
    timeout: float = 30.0,
) -> list[Result]:
    """`n` requests, `concurrency` at a time (closed loop); request `i` is `make(i)`."""
    results: list[Result | None] = [None] * n
    next_index = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as client:

        async def worker() -> None:
            for i in next_index:
                body, headers = make(i)
                results[i] = await send(client, body, headers)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [r for r in results if r is not None]


def send_sync(
    client: httpx.Client,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    rid: str | None = None,
) -> Result:
    rid = rid or request_id()
    result = Result(rid, body.get("stream") is True, time.monotonic())
    try:
        with client.stream(
            "POST", CHAT, json=body, headers={"x-request-id": rid, **(headers or {})}
        ) as resp:
            result.status = resp.status_code
            result.headers = {k.lower(): v for k, v in resp.headers.items()}
            for chunk in resp.iter_raw():
                result.add(chunk)
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result.finish()


class BackgroundLoad:
    """Closed-loop load from `threads` client threads until `stop()`; `results` in start order.

    Request `i` (a global counter) is `make(i)`. Threads keep their own keep-alive client.
    """

    def __init__(
        self,
        base: str,
        make: Callable[[int], tuple[dict[str, Any], dict[str, str]]],
        threads: int = 1,
        pause_s: float = 0.0,
        timeout: float = 30.0,
    ) -> None:
        self.base, self.make, self.pause_s, self.timeout = base, make, pause_s, timeout
        self.results: list[Result] = []
        self._counter = itertools.count()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> BackgroundLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Result]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return sorted(self.results, key=lambda r: r.started)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=self.timeout) as client:
            while not self._stop.is_set():
                body, headers = self.make(next(self._counter))
                self.results.append(send_sync(client, body, headers))
                if self.pause_s:
                    self._stop.wait(self.pause_s)


# -- raw keep-alive client -------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float  # from the request's first byte written to the answer's last byte read


class RawClient:
    """One keep-alive HTTP/1.1 connection; answers must carry Content-Length."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawClient:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()

    def write(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> float:
        """Send one request without waiting; returns the time it was written."""
        assert self._writer is not None
        data = json.dumps(body).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._writer.write(
            f"POST {CHAT} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\n{head}\r\n".encode()
            + data
        )
        return time.monotonic()

    async def read(self, sent_at: float) -> RawResponse:
        assert self._reader is not None
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await self._reader.readexactly(int(headers["content-length"]))
        return RawResponse(status, headers, body, time.monotonic() - sent_at)

    async def post(
        self, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> RawResponse:
        return await self.read(self.write(body, headers))


# -- configs ---------------------------------------------------------------------------------


def chat_config(
    urls: dict[str, str],
    weights: Mapping[str, float] | None = None,
    *,
    version_extra: dict[str, dict[str, Any]] | None = None,
    top: dict[str, Any] | None = None,
    **routing: Any,
) -> dict[str, Any]:
    """One model `chat` with a version per `urls` entry (upstream model `up-<vid>`).

    The drain window is 0 so the harness's SIGTERM stops the gateway at once (C6 sets its own).
    """
    versions = {
        vid: {"upstream": {"url": url, "model": f"up-{vid}"}, **(version_extra or {}).get(vid, {})}
        for vid, url in urls.items()
    }
    weights = dict(weights or dict.fromkeys(urls, 1))
    return {
        "drain": {"window_s": 0, "deadline_s": 2},  # fast teardown (SIGTERM from the harness)
        **(top or {}),
        "models": {"chat": {"versions": versions, "routing": {"weights": weights, **routing}}},
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-quantile (0-1) by nearest rank: the value at or above that share of the data."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))
    return ordered[rank]
