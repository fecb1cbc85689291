"""Mock upstream counters (`MockStats`), served as JSON by ``GET /mock/stats``."""

from __future__ import annotations

from collections import deque
from typing import Any

MAX_DISCONNECT_TIMES = 1000


class MockStats:
    """Counters of a running mock; the hot path only increments and stores references."""

    def __init__(self) -> None:
        self.inflight = 0
        self.reset()

    def reset(self) -> None:
        """Zero everything except the ``inflight`` gauge (requests may be running)."""
        self.requests = 0  # calls to the model endpoints (and on response ids)
        self.by_path: dict[str, int] = {}
        self.max_inflight = self.inflight
        self.completed = 0  # responses fully sent
        self.errors_sent = 0  # non-2xx responses sent
        self.disconnects = 0  # clients gone before their response was complete
        self.disconnect_times: deque[float] = deque(maxlen=MAX_DISCONNECT_TIMES)
        self.raw_headers: list[tuple[bytes, bytes]] = []  # of the last model request
        self.last_body: Any = None  # parsed JSON of the last model request
        self.models_seen: dict[str, int] = {}
        self.last_upload: dict[str, bytes] = {}  # multipart fields of the last upload

    @property
    def last_headers(self) -> dict[str, str]:
        """Headers of the last model request, lower-cased names (decoded on demand)."""
        return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.raw_headers}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot."""
        return {
            "requests": self.requests,
            "by_path": dict(self.by_path),
            "inflight": self.inflight,
            "max_inflight": self.max_inflight,
            "completed": self.completed,
            "errors_sent": self.errors_sent,
            "disconnects": self.disconnects,
            "disconnect_times": list(self.disconnect_times),
            "last_headers": self.last_headers,
            "last_body": self.last_body,
            "models_seen": dict(self.models_seen),
            "last_upload": {k: len(v) for k, v in self.last_upload.items()},  # field sizes
        }
