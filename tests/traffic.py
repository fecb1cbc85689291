"""An open-loop load driver for integration tests, running in its own thread and event loop.

`Load(urls, rps)` sends chat completions at a fixed rate (round robin over gateway base URLs,
every `stream_every`-th one streamed) while the test injects faults, and keeps one `Result` per
request: status, latency, serving version, and whether a stream ended with `data: [DONE]`.
A client-visible error is a non-2xx status, a transport error, or a stream without `[DONE]`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True)
class Result:
    at: float  # monotonic send time
    url: str
    status: int  # 0: transport error
    latency: float
    version: str
    complete: bool
    session: str = ""  # the x-session-id sent, with `sessions`

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.complete


class Load:
    def __init__(
        self,
        urls: list[str],
        rps: float,
        *,
        stream_every: int = 5,
        model: str = "chat",
        headers: dict[str, str] | None = None,
        max_inflight: int = 64,
        sessions: int = 0,
    ) -> None:
        self.urls, self.rps, self.stream_every, self.model = urls, rps, stream_every, model
        self.headers = headers or {}
        self.results: list[Result] = []
        self._max_inflight = max_inflight
        self.sessions = sessions  # > 0: request i sends x-session-id s<i mod sessions>
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> list[Result]:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.results

    def errors(self) -> list[Result]:
        return [r for r in self.results if not r.ok]

    def shares(self, since: float, until: float = float("inf")) -> dict[str, float]:
        picked = [r.version for r in self.results if since <= r.at < until and r.ok]
        return {v: picked.count(v) / len(picked) for v in sorted(set(picked))} if picked else {}

    async def _run(self) -> None:
        limit = asyncio.Semaphore(self._max_inflight)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tasks: set[asyncio.Task[None]] = set()
            began, sent = time.monotonic(), 0
            while not self._stop.is_set():
                due = began + sent / self.rps
                await asyncio.sleep(max(due - time.monotonic(), 0))
                await limit.acquire()
                url = self.urls[sent % len(self.urls)]
                stream = self.stream_every > 0 and sent % self.stream_every == 0
                sid = f"s{sent % self.sessions}" if self.sessions else ""
                task = asyncio.create_task(self._one(session, url, stream, limit, sid))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            if tasks:
                await asyncio.gather(*tasks)

    async def _one(
        self,
        session: aiohttp.ClientSession,
        base: str,
        stream: bool,
        limit: asyncio.Semaphore,
        sid: str = "",
    ) -> None:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": stream,
        }
        started = time.monotonic()
        status, version, complete = 0, "", False
        try:
            url = f"{base}/v1/chat/completions"
            headers = {**self.headers, "x-session-id": sid} if sid else self.headers
            async with session.post(url, json=body, headers=headers) as resp:
                status, version = resp.status, resp.headers.get("x-gateway-version", "")
                data = await resp.read()
                complete = (b"data: [DONE]" in data) if stream else True
        except (aiohttp.ClientError, TimeoutError):
            pass
        finally:
            limit.release()
        self.results.append(
            Result(started, base, status, time.monotonic() - started, version, complete, sid)
        )
