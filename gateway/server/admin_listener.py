"""The separate admin listener (`admin.listen`): a second uvicorn server in the same process and
event loop, started and stopped by the app's lifespan, serving only `/admin` (API, status page)
and the status page's login form; the client port then has no admin routes at all.

Its socket is bound with SO_REUSEPORT, so each `--workers` process serves it too (the kernel
spreads connections; admin changes reach every process and replica through the control plane).
A port that cannot be bound fails start-up. Signals stay with the main server, whose lifespan
stops this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn
from fastapi import FastAPI

from gateway.config.schema import AdminListen
from gateway.proxy.edge import GuardedHttpToolsProtocol

STOP_S = 5.0
log = logging.getLogger("gateway.admin")


class AdminListener:
    """Runs uvicorn's startup, main loop and shutdown itself (not `serve()`, which would take
    over the process's signal handlers from the main server)."""

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
        self._server = uvicorn.Server(config)
        self._sockets: list[socket.socket] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and listen; a port that cannot be bound raises here (start-up fails)."""
        self._sockets = [_bind(self._where.host, self._where.port)]
        config = self._server.config
        if not config.loaded:
            config.load()
        self._server.lifespan = config.lifespan_class(config)
        await self._server.startup(sockets=self._sockets)
        self._task = asyncio.get_running_loop().create_task(self._server.main_loop())
        where = self._where
        log.info("admin API on http://%s:%d (not on the client port)", where.host, where.port)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._task, STOP_S)
        await self._server.shutdown(sockets=self._sockets)
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
