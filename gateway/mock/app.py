"""Mock upstream ASGI app (`MockUpstream`) and its uvicorn runner (`run`).

Owns routing, request accounting, fault application and disconnect detection. A disconnect
watcher task (a concurrent ``receive()`` waiting for ``http.disconnect``) is started only when
the request actually waits (latency, ttft, chunk delay, stall); the 0-latency path spawns none.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, replace
from typing import Any

import orjson
import uvicorn

from gateway.mock import surface
from gateway.mock.compress import accepts_gzip, gzipping
from gateway.mock.knobs import NO_FAULT, Fault, MockSettings, parse_fault, validate_config
from gateway.mock.responses import ResponseStore, stream_events
from gateway.mock.stats import MockStats
from gateway.mock.wire import (
    JSON_TYPE,
    SSE_HEADERS,
    Wire,
    error_body,
    json_headers,
    usage,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
RESPONSES_PATH = "/v1/responses"
RESPONSE_PREFIX = "/v1/responses/"
TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
WIRE_PATHS = frozenset((CHAT_PATH, COMPLETIONS_PATH))
STREAMING_PATHS = frozenset((CHAT_PATH, COMPLETIONS_PATH, RESPONSES_PATH))
MODEL_PATHS = frozenset(
    (
        CHAT_PATH,
        COMPLETIONS_PATH,
        EMBEDDINGS_PATH,
        RESPONSES_PATH,
        "/v1/images/generations",
        "/v1/audio/speech",
        TRANSCRIPTIONS_PATH,
        "/v1/moderations",
        "/v1/rerank",
    )
)
CONTROL_PATHS = frozenset(("/v1/models", "/mock/stats", "/mock/reset", "/mock/config"))
FAULT_HEADER = b"x-mock-fault"


async def _wait_disconnect(receive: Receive) -> None:
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:  # a broken receive channel means the client is gone
        return


class _Conn:
    """One HTTP exchange: ``send`` plus a disconnect watcher started on the first wait."""

    __slots__ = ("receive", "send", "watcher")

    def __init__(self, receive: Receive, send: Send) -> None:
        self.receive, self.send = receive, send
        self.watcher: asyncio.Task[None] | None = None

    def _watch(self) -> asyncio.Task[None]:
        if self.watcher is None:
            self.watcher = asyncio.ensure_future(_wait_disconnect(self.receive))
        return self.watcher

    async def pause(self, ms: float) -> bool:
        """Sleep ``ms``; True as soon as the client has disconnected."""
        if ms <= 0:
            return self.watcher is not None and self.watcher.done()
        done, _ = await asyncio.wait((self._watch(),), timeout=ms / 1000)
        return bool(done)

    async def until_disconnect(self) -> None:
        await asyncio.wait((self._watch(),))

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away first."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if message["type"] == "http.request" and not message.get("more_body"):
        return body
    parts = [body]
    while message["type"] == "http.request" and message.get("more_body"):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts) if message["type"] == "http.request" else None


async def _send_all(send: Send, status: int, headers: list[Any], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        kind = (await receive())["type"]
        if kind == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _input_count(inputs: Any) -> int:
    """Embedding inputs: a string or token list is one, a list of them is many."""
    if isinstance(inputs, list) and not (inputs and isinstance(inputs[0], int)):
        return len(inputs)
    return 1


class MockUpstream:
    """The ASGI app: OpenAI endpoints, fault injection and ``/mock/*`` controls."""

    def __init__(self, settings: MockSettings) -> None:
        self.settings = settings
        self.stats = MockStats()
        self._rng = random.Random(settings.seed)
        self._wire = Wire()
        self.responses = ResponseStore(settings.model)
        card = {"id": settings.model, "object": "model", "created": self._wire.created}
        self._models = orjson.dumps({"object": "list", "data": [{**card, "owned_by": "mock"}]})

    def configure(self, changes: Any) -> MockSettings:
        """Apply a ``/mock/config`` body (ValueError if invalid); a new seed reseeds the RNG."""
        valid = validate_config(changes)
        self.settings = replace(self.settings, **valid)
        if "seed" in valid:
            self._rng = random.Random(valid["seed"])
        return self.settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path in MODEL_PATHS and scope["method"] == "POST":
                await self._model_request(scope, _Conn(receive, send), path)
            elif path.startswith(RESPONSE_PREFIX):
                await self._response_call(scope, receive, send, path)
            else:
                await self._control(scope, receive, send, path)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)

    async def _control(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        route = (scope["method"], path)
        status, body = 200, b""
        if route == ("GET", "/v1/models"):
            body = self._models
        elif route == ("GET", "/mock/stats"):
            body = orjson.dumps(self.stats.to_dict())
        elif route == ("POST", "/mock/reset"):
            self.stats.reset()
            body = orjson.dumps(self.stats.to_dict())
        elif route == ("POST", "/mock/config"):
            try:
                changes = orjson.loads(await _read_body(receive) or b"")
                body = orjson.dumps(asdict(self.configure(changes)))
            except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
                status, body = 400, error_body(400, str(exc), "invalid_config")
        else:
            status = 405 if path in MODEL_PATHS or path in CONTROL_PATHS else 404
            body = error_body(status, f"no route for {route[0]} {path}", "mock_no_route")
            self.stats.errors_sent += 1
        await _send_all(send, status, json_headers(body), body)

    async def _model_request(self, scope: Scope, conn: _Conn, path: str) -> None:
        stats = self.stats
        stats.requests += 1
        stats.by_path[path] = stats.by_path.get(path, 0) + 1
        stats.raw_headers = scope["headers"]
        stats.inflight += 1
        stats.max_inflight = max(stats.max_inflight, stats.inflight)
        try:
            await self._serve(scope, conn, path)
        finally:
            stats.inflight -= 1
            conn.close()

    async def _serve(self, scope: Scope, conn: _Conn, path: str) -> None:
        body = await _read_body(conn.receive)
        if body is None:
            self._disconnected()
            return
        unlucky = self._rng.random() < self.settings.error_rate  # one draw per request, always
        try:
            request = self._request(scope, path, body)
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            await self._error(conn, 400, f"invalid request body: {exc}", "invalid_json")
            return
        self.stats.last_body = request
        previous = request.get("previous_response_id") if path == RESPONSES_PATH else None
        if previous is not None and self.responses.get(previous) is None:
            message = f"Previous response with id '{previous}' not found."
            await self._error(conn, 404, message, "previous_response_not_found")
            return
        model = request.get("model")
        model = model if isinstance(model, str) else self.settings.model
        self.stats.models_seen[model] = self.stats.models_seen.get(model, 0) + 1
        fault = NO_FAULT
        for name, value in scope["headers"]:
            if name == FAULT_HEADER:
                try:
                    fault = parse_fault(value.decode("latin-1"))
                except ValueError as exc:
                    await self._error(conn, 400, str(exc), "invalid_mock_fault")
                    return
        if fault.gzip or (fault.gzip_asked and accepts_gzip(scope["headers"])):
            conn.send = gzipping(conn.send)
        await self._respond(conn, path, request, fault, unlucky, orjson.dumps(model), len(body))

    def _request(self, scope: Scope, path: str, body: bytes) -> dict[str, Any]:
        """The request's fields: its JSON object, or its multipart form (transcriptions)."""
        if path == TRANSCRIPTIONS_PATH:
            content_type = dict(scope["headers"]).get(b"content-type", b"")
            fields = surface.form_fields(body, content_type)
            self.stats.last_upload = fields
            return {"model": fields.get("model", b"").decode()}
        request = orjson.loads(body)
        if not isinstance(request, dict):
            raise ValueError("request body must be a JSON object")
        return request

    async def _response_call(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """GET/DELETE `/v1/responses/{id}`, POST `.../cancel`, GET `.../input_items`."""
        rid, _, suffix = path[len(RESPONSE_PREFIX) :].partition("/")
        route = (scope["method"], suffix)
        key = "/v1/responses/{id}" + (f"/{suffix}" if suffix else "")
        self.stats.requests += 1
        self.stats.by_path[key] = self.stats.by_path.get(key, 0) + 1
        self.stats.raw_headers = scope["headers"]
        await _read_body(receive)
        found = self.responses.get(rid)
        status, body = 200, b""
        if route not in (("GET", ""), ("DELETE", ""), ("POST", "cancel"), ("GET", "input_items")):
            status, body = 405, error_body(405, f"no route for {route[0]} {path}", "mock_no_route")
        elif found is None:
            status = 404
            body = error_body(404, f"Response with id '{rid}' not found.", "response_not_found")
        elif route == ("DELETE", ""):
            self.responses.delete(rid)
            body = orjson.dumps({"id": rid, "object": "response", "deleted": True})
        elif route == ("POST", "cancel"):
            found["status"] = "cancelled"
            body = orjson.dumps(found)
        elif suffix == "input_items":
            body = orjson.dumps(self.responses.input_items(rid))
        elif b"stream=true" in scope.get("query_string", b""):
            events = stream_events(found, len(found["output"][0]["content"][0]["text"].split()))
            await _send_all(send, 200, SSE_HEADERS, b"".join(events))
            self._sent(200)
            return
        else:
            body = orjson.dumps(found)
        await _send_all(send, status, json_headers(body), body)
        self._sent(status)

    async def _respond(
        self,
        conn: _Conn,
        path: str,
        request: dict[str, Any],
        fault: Fault,
        unlucky: bool,
        model: bytes,
        size: int,
    ) -> None:
        stream = path in STREAMING_PATHS and request.get("stream") is True
        if fault.stall:
            await conn.until_disconnect()
            self._disconnected()
            return
        delay = fault.latency_ms + (0.0 if stream else self.settings.latency_ms)
        if await conn.pause(delay):
            self._disconnected()
        elif fault.status or unlucky:
            status = fault.status or 500
            message = f"mock upstream injected a {status}"
            if fault.echo:
                headers = dict(self.stats.last_headers)
                message += f" for {path}?key={headers.get('authorization', '')}; headers: {headers}"
            await self._error(conn, status, message, "mock_fault")
        elif fault.empty:
            await _send_all(conn.send, 200, SSE_HEADERS, b"")
            self._sent(200)
        elif stream:
            await self._stream(conn, path, model, request, fault, size)
        else:
            body, content_type = self._answer(path, request, fault, model, size)
            if fault.echo and body.endswith(b"}"):
                echo = orjson.dumps(self.stats.last_headers.get("authorization", ""))
                body = body[:-1] + b',"echo":' + echo + b"}"
            await self._reply(conn, body, content_type, fault)

    def _answer(
        self, path: str, request: dict[str, Any], fault: Fault, model: bytes, size: int
    ) -> tuple[bytes, tuple[bytes, bytes]]:
        """The non-streamed answer and its content type."""
        prompt = max(1, size // 4)  # rough token estimate: four body bytes per token
        n = self.settings.chunks if fault.chunks is None else fault.chunks
        if path in WIRE_PATHS:  # chat and text completions: the pre-encoded fast path
            use = b"null" if fault.no_usage else usage(prompt, n)
            return self._wire.answer(path == CHAT_PATH, n, model, use), JSON_TYPE
        if path == EMBEDDINGS_PATH:
            b64 = request.get("encoding_format") == "base64"
            count = _input_count(request.get("input"))
            return self._wire.embeddings(model, count, b64, prompt), JSON_TYPE
        name: str = orjson.loads(model)
        if path == RESPONSES_PATH:
            return orjson.dumps(self.responses.create(request, name, n, prompt)), JSON_TYPE
        if path == "/v1/audio/speech":
            return surface.speech(request, name), surface.SPEECH_TYPE
        if path == TRANSCRIPTIONS_PATH:
            return surface.transcription(self.stats.last_upload), JSON_TYPE
        if path == "/v1/moderations":
            return surface.moderation(request, name), JSON_TYPE
        if path == "/v1/rerank":
            return surface.rerank(request, name), JSON_TYPE
        return surface.image(request), JSON_TYPE  # /v1/images/generations

    async def _reply(
        self, conn: _Conn, body: bytes, content_type: tuple[bytes, bytes], fault: Fault
    ) -> None:
        if fault.stall_after is None and fault.cut is None:
            headers = [content_type, (b"content-length", b"%d" % len(body))]
            await _send_all(conn.send, 200, headers, body)
            self._sent(200)
            return
        cut = fault.cut is not None
        limit = fault.cut if fault.cut is not None else fault.stall_after
        await conn.send({"type": "http.response.start", "status": 200, "headers": [content_type]})
        await conn.send({"type": "http.response.body", "body": body[:limit], "more_body": not cut})
        if cut:
            self._sent(200)
            return
        await conn.until_disconnect()
        self._disconnected()

    async def _stream(
        self,
        conn: _Conn,
        path: str,
        model: bytes,
        request: dict[str, Any],
        fault: Fault,
        size: int,
    ) -> None:
        settings = self.settings
        n = settings.chunks if fault.chunks is None else fault.chunks
        gap = settings.chunk_delay_ms if fault.chunk_delay_ms is None else fault.chunk_delay_ms
        ttft = settings.latency_ms if settings.ttft_ms is None else settings.ttft_ms
        ttft = ttft if fault.ttft_ms is None else fault.ttft_ms
        options = request.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        wants_usage = wants_usage and not fault.no_usage
        if path == RESPONSES_PATH:
            response = self.responses.create(request, orjson.loads(model), n, max(1, size // 4))
            events = stream_events(response, n)
        else:
            use = usage(max(1, size // 4), n) if wants_usage else None
            events = self._wire.events(path == CHAT_PATH, n, model, use)
        if fault.echo and path != RESPONSES_PATH:
            events = [*events[:1], *self._echo_events(path == CHAT_PATH), *events[1:]]
        limit = fault.cut if fault.cut is not None else fault.stall_after
        body = events[:-1] if limit is None else events[: min(limit, len(events) - 1)]
        await conn.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        for i, event in enumerate(body):
            if await conn.pause(gap if i else ttft):
                self._disconnected()
                return
            await conn.send({"type": "http.response.body", "body": event, "more_body": True})
        if limit is not None and fault.cut is None:  # stall-after:N
            await conn.until_disconnect()
            self._disconnected()
            return
        last = events[-1] if limit is None else b""  # the terminal event, unless cut
        await conn.send({"type": "http.response.body", "body": last})
        self._sent(200)

    def _echo_events(self, chat: bool) -> list[bytes]:
        """One content event carrying the request's credential, as two sends split mid-key."""
        text = "key " + self.stats.last_headers.get("authorization", "")
        part: dict[str, Any] = {"index": 0, "finish_reason": None}
        part.update({"delta": {"content": text}} if chat else {"text": text})
        kind = "chat.completion.chunk" if chat else "text_completion"
        event = b"data: " + orjson.dumps({"id": "echo", "object": kind, "choices": [part]})
        middle = event.index(b"Bearer ") + 12 if b"Bearer " in event else len(event) // 2
        return [event[:middle], event[middle:] + b"\n\n"]

    async def _error(self, conn: _Conn, status: int, message: str, code: str) -> None:
        body = error_body(status, message, code)
        await _send_all(conn.send, status, json_headers(body), body)
        self._sent(status)

    def _sent(self, status: int) -> None:
        self.stats.completed += 1
        if status >= 300:
            self.stats.errors_sent += 1

    def _disconnected(self) -> None:
        self.stats.disconnects += 1
        self.stats.disconnect_times.append(time.time())


def run(settings: MockSettings, host: str, port: int) -> None:
    """Serve a `MockUpstream` with uvicorn (httptools, uvloop, quiet) until interrupted."""
    app = MockUpstream(settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        http="httptools",
        loop="uvloop",
        access_log=False,
        log_level="warning",
        lifespan="off",
        server_header=False,
    )
