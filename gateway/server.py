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
from types import FrameType
from typing import Any

import uvicorn

from gateway.app import GatewayApp
from gateway.config.schema import Drain, GatewayConfig
from gateway.edge import GuardedHttpToolsProtocol

log = logging.getLogger("gateway.server")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: GatewayApp, drain: Drain) -> None:
        super().__init__(config)
        self._app = app
        self._drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        gateway = self._app.gateway
        if sig != signal.SIGTERM or gateway.draining or self._loop is None:
            super().handle_exit(sig, frame)
            return
        gateway.draining = True
        log.info(
            "SIGTERM: draining for %.1fs, then %.1fs for requests in flight",
            self._drain.window_s,
            self._drain.deadline_s,
        )
        self._loop.call_soon_threadsafe(self._loop.call_later, self._drain.window_s, self._stop)

    def _stop(self) -> None:
        assert self._loop is not None
        self._loop.call_later(self._drain.deadline_s, self._app.gateway.end_inflight)
        self.should_exit = True  # uvicorn stops accepting and waits for requests in flight


def uvicorn_options(cfg: GatewayConfig) -> dict[str, Any]:
    """How uvicorn runs the gateway: uvloop, the guarded httptools parser, our logging."""
    proxies = list(cfg.listen.trusted_proxies)
    return {
        "loop": "uvloop",
        "http": GuardedHttpToolsProtocol,
        "interface": "asgi3",  # GatewayApp.__call__ returns a coroutine instead of being one
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies or None,
        "lifespan": "on",
        "access_log": False,
        "server_header": False,
        "log_config": None,  # keep the gateway's own logging set-up (gateway/logs.py)
        "timeout_graceful_shutdown": int(cfg.drain.deadline_s) + 5,
    }


def serve(app: GatewayApp, host: str, port: int, drain: Drain) -> None:
    options = uvicorn_options(app.gateway.runtime.config)
    DrainingServer(uvicorn.Config(app, host=host, port=port, **options), app, drain).run()
