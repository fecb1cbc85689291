"""The separate admin listener (`admin.listen`): a second uvicorn server in the same process and
event loop, started and stopped by the app's lifespan, serving only `/admin` (API, status page)
and the status page's login form; the client port then has no admin routes at all.

Its socket is bound with SO_REUSEPORT, so each `--workers` process serves it too (the kernel
spreads connections; admin changes reach every process and replica through the control plane).
A port that cannot be bound fails start-up. Signals stay with the main server, whose shutdown
stops this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from gateway.config.schema import AdminListen
from gateway.edge import GuardedHttpToolsProtocol

STOP_S = 5.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the main server owns SIGTERM/SIGINT and stops this one from its lifespan


class AdminListener:
    def __init__(self, app: FastAPI, where: AdminListen) -> None:
        self._where = where
        config = uvicorn.Config(
            app,
            lifespan="off",  # the main app's lifespan owns every resource
            http=GuardedHttpToolsProtocol,
            access_log=False,
            server_header=False,
            log_config=None,
            timeout_graceful_shutdown=int(STOP_S),
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sock = _bind(self._where.host, self._where.port)
        self._task = asyncio.get_running_loop().create_task(self._server.serve([sock]))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()  # a failed start raises here

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._task, STOP_S + 1)
        self._task = None


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock
