"""Running the app under uvicorn, with a graceful drain on SIGTERM.

On the first SIGTERM the gateway turns not-ready at once (`/readyz` answers 503 so load balancers
stop sending) but keeps serving new requests for `drain.window_s`; then it stops accepting,
lets requests in flight run until `drain.deadline_s`, ends whatever is still running (streams get
a terminal `server_shutdown` error event), and exits. A second signal exits immediately.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable
from types import FrameType
from typing import Any, Protocol

import uvicorn
from starlette.types import Receive, Scope, Send

from gateway.config.schema import Drain, GatewayConfig
from gateway.proxy.edge import GuardedHttpToolsProtocol
from gateway.runtime.current import Current

log = logging.getLogger("gateway.server")


class Served(Protocol):
    """What the server needs of the app beside ASGI: its current runtime and the drain hook."""

    current: Current

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]: ...

    def end_inflight(self) -> None: ...


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Served, drain: Drain) -> None:
        super().__init__(config)
        self._app = app
        self._drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        current = self._app.current
        if sig != signal.SIGTERM or current.draining or self._loop is None:
            super().handle_exit(sig, frame)
            return
        current.draining = True
        log.info(
            "SIGTERM: draining for %.1fs, then %.1fs for requests in flight",
            self._drain.window_s,
            self._drain.deadline_s,
        )
        self._loop.call_soon_threadsafe(self._loop.call_later, self._drain.window_s, self._stop)

    def _stop(self) -> None:
        assert self._loop is not None
        self._loop.call_later(self._drain.deadline_s, self._app.end_inflight)
        self.should_exit = True  # uvicorn stops accepting and waits for requests in flight


def uvicorn_options(cfg: GatewayConfig) -> dict[str, Any]:
    """How uvicorn runs the gateway: uvloop, the guarded httptools parser (which reads its limits
    from the app), our logging."""
    proxies = list(cfg.listen.trusted_proxies)
    return {
        "loop": "uvloop",
        "http": GuardedHttpToolsProtocol,
        "interface": "asgi3",  # App.__call__ returns a coroutine instead of being one
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies or None,
        "lifespan": "on",
        "access_log": False,
        "server_header": False,
        "log_config": None,  # keep the gateway's own logging set-up (observability/logs.py)
        "timeout_graceful_shutdown": int(cfg.drain.deadline_s) + 5,
    }


def serve(app: Served, host: str, port: int) -> None:
    cfg = app.current.runtime.config
    options = uvicorn_options(cfg)
    DrainingServer(uvicorn.Config(app, host=host, port=port, **options), app, cfg.drain).run()
