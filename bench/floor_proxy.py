"""The "Python floor": the least a Python pass-through proxy can do, to compare the gateway with.

A raw ASGI app under uvicorn (uvloop + httptools, no access log) that POSTs each request body to
``--upstream`` + the request path with one shared aiohttp session (made in the lifespan) and
relays status, content-type and body; event streams are relayed chunk by chunk.
Usage: ``python bench/floor_proxy.py --port 8100 --upstream http://127.0.0.1:9001``.
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn

STATE: dict[str, Any] = {}


async def lifespan(receive: Any, send: Any) -> None:
    while True:
        kind = (await receive())["type"]
        if kind == "lifespan.startup":
            STATE["session"] = aiohttp.ClientSession()
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            await STATE["session"].close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    url = STATE["upstream"] + scope["path"]
    json_type = {"content-type": "application/json"}
    async with STATE["session"].post(url, data=body, headers=json_type) as resp:
        ctype = resp.headers.get("content-type", "application/json")
        start = {"type": "http.response.start", "status": resp.status}
        if ctype.startswith("text/event-stream"):
            await send({**start, "headers": [(b"content-type", ctype.encode())]})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        data = await resp.read()
        headers = [(b"content-type", ctype.encode()), (b"content-length", b"%d" % len(data))]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": data})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="origin, e.g. http://127.0.0.1:9001")
    args = parser.parse_args()
    STATE["upstream"] = args.upstream.rstrip("/")
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
