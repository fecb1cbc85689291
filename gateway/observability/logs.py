"""Logging: JSON (or plain text) lines, one access line per request, event lines for decisions.

Owns the log format and the access line. An access line carries the request id, model, version,
status, outcome, latency, time to first byte, tokens, attempts and the client key's id — never a
secret, a header value or a prompt. `configure` is called once at start-up from the `logging`
config section (`level`, `format: json|text`, `access: true|false`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sys
import time
from typing import IO, Any

import orjson

from gateway.exchange import Exchange

ACCESS = logging.getLogger("gateway.access")
MAX_BATCH_BYTES = 64 << 10


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the `fields` given in `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        line: dict[str, Any] = {
            "ts": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str, fmt: str, access: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    ACCESS.disabled = not access


def access_fields(ex: Exchange) -> dict[str, Any]:
    """The access line's own fields (after the common `ts`, `level`, `logger`, `msg`)."""
    return access_line(ex, {})


def access_line(ex: Exchange, line: dict[str, Any]) -> dict[str, Any]:
    """`line` with the access fields of `ex` added (one dict per line, built in place)."""
    line["event"] = "access"
    line["request_id"] = ex.request_id
    line["path"] = ex.path
    line["model"] = ex.model
    line["version"] = ex.version
    line["status"] = ex.status
    line["outcome"] = ex.outcome
    line["stream"] = ex.stream
    line["latency_ms"] = _ms(ex.duration)
    line["ttft_ms"] = None if ex.ttft is None else _ms(ex.ttft)
    line["prompt_tokens"] = ex.prompt_tokens
    line["completion_tokens"] = ex.completion_tokens
    attempts = len(ex.attempts)
    line["attempts"] = attempts
    line["retries"] = attempts - 1 if attempts > 1 else 0
    line["client"] = ex.client or None
    line["route"] = ex.routing_reason or None
    return line


def _ms(seconds: float) -> float:
    """Milliseconds to two decimals (half up; `round` costs twice as much, per line)."""
    return int(seconds * 100_000 + 0.5) / 100


class AccessLog:
    """Access lines written in batches: a request's line is formatted when it ends (its objects
    are still in the CPU's caches, and none is kept afterwards) into one growing buffer, which a
    background task writes every `interval_s` (or sooner once it holds `MAX_BATCH_BYTES`).
    Lines have the same shape as `JsonFormatter`'s; with `format: text` lines go through
    `logging` instead."""

    def __init__(self, enabled: bool, json: bool, stream: IO[bytes] | None = None) -> None:
        self.enabled = enabled
        self._json = json
        self._stream = stream or sys.stderr.buffer
        self._lines = bytearray()  # formatted, not yet written
        self._second, self._prefix = -1, ""

    def write(self, ex: Exchange) -> None:
        if not self.enabled:
            return
        if not self._json:
            ACCESS.info("%s %s", ex.status, ex.path, extra={"fields": access_fields(ex)})
            return
        line = {"ts": self._stamp(time.time()), "level": "info", "logger": ACCESS.name}
        line["msg"] = f"{ex.status} {ex.path}"
        self._lines += orjson.dumps(access_line(ex, line), option=orjson.OPT_APPEND_NEWLINE)
        if len(self._lines) >= MAX_BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        data, self._lines = self._lines, bytearray()
        with contextlib.suppress(OSError, ValueError):
            self._stream.write(data)
            self._stream.flush()

    def _stamp(self, when: float) -> str:
        """UTC time with milliseconds, as `JsonFormatter` writes it; formatted once a second."""
        second = int(when)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((when - second) * 1000):03d}Z"

    async def run(self, interval_s: float = 0.2) -> None:
        try:
            while True:
                await asyncio.sleep(interval_s)
                self.flush()
        finally:
            self.flush()


def event(logger: logging.Logger, name: str, message: str, **fields: Any) -> None:
    """A structured event line (reloads, ejections, canary decisions)."""
    logger.info(message, extra={"fields": {"event": name, **fields}})
