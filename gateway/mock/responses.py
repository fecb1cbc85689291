"""The mock upstream's Responses API: stored responses, their JSON and their typed stream events.

Ids carry the mock's model name (`resp_<model>_<n>`), so a test can tell which upstream created
a response; a `previous_response_id` (and every `GET`/`DELETE`/`cancel`) naming an id this mock
did not create answers 404, as a real stateful upstream would. The store keeps the newest
`MAX_STORED` responses.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from typing import Any

import orjson

from gateway.mock.wire import WORDS

MAX_STORED = 100_000
UNSAFE = re.compile(r"[^A-Za-z0-9]+")


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


class ResponseStore:
    """Responses this mock created, by id."""

    def __init__(self, model: str) -> None:
        self._tag = UNSAFE.sub("-", model).strip("-") or "mock"
        self._count = 0
        self.stored: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.inputs: dict[str, list[dict[str, Any]]] = {}

    def create(self, request: dict[str, Any], model: str, n: int, prompt: int) -> dict[str, Any]:
        """A completed response to `request` (stored unless `store` is false)."""
        self._count += 1
        rid = f"resp_{self._tag}_{self._count:x}"
        text = "".join(WORDS[i % len(WORDS)] for i in range(n))
        message = {
            "type": "message",
            "id": f"msg_{self._tag}_{self._count:x}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        response = {
            "id": rid,
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": request.get("instructions"),
            "model": model,
            "output": [message],
            "parallel_tool_calls": True,
            "previous_response_id": request.get("previous_response_id"),
            "temperature": 1.0,
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "usage": _usage(prompt, n),
            "metadata": {},
        }
        if request.get("store") is not False:
            self.stored[rid] = response
            self.inputs[rid] = _input_items(request.get("input"))
            while len(self.stored) > MAX_STORED:
                old, _ = self.stored.popitem(last=False)
                self.inputs.pop(old, None)
        return response

    def get(self, rid: str) -> dict[str, Any] | None:
        return self.stored.get(rid)

    def delete(self, rid: str) -> bool:
        self.inputs.pop(rid, None)
        return self.stored.pop(rid, None) is not None

    def input_items(self, rid: str) -> dict[str, Any]:
        items = self.inputs.get(rid, [])
        first = items[0]["id"] if items else None
        last = items[-1]["id"] if items else None
        return {"object": "list", "data": items, "first_id": first, "last_id": last,
                "has_more": False}  # fmt: skip


def _input_items(given: Any) -> list[dict[str, Any]]:
    if isinstance(given, str):
        given = [{"role": "user", "content": given}]
    items = given if isinstance(given, list) else []
    return [
        {"id": f"msg_in_{i}", "type": "message", **item}
        for i, item in enumerate(items)
        if isinstance(item, dict)
    ]


def _event(kind: str, seq: int, **fields: Any) -> bytes:
    data = orjson.dumps({"type": kind, "sequence_number": seq, **fields})
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def stream_events(response: dict[str, Any], n: int) -> list[bytes]:
    """The typed SSE events of `response` (of `n` words) being generated, `response.completed`
    last."""
    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    message = response["output"][0]
    part = message["content"][0]
    item = {**message, "status": "in_progress", "content": []}
    ids = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    events = [
        _event("response.created", 0, response=pending),
        _event("response.in_progress", 1, response=pending),
        _event("response.output_item.added", 2, output_index=0, item=item),
        _event("response.content_part.added", 3, **ids, part={**part, "text": ""}),
    ]
    seq = 4
    for i in range(n):
        delta = WORDS[i % len(WORDS)]
        events.append(_event("response.output_text.delta", seq, **ids, delta=delta))
        seq += 1
    text = part["text"]
    events += [
        _event("response.output_text.done", seq, **ids, text=text),
        _event("response.content_part.done", seq + 1, **ids, part=part),
        _event("response.output_item.done", seq + 2, output_index=0, item=message),
        _event("response.completed", seq + 3, response=response),
    ]
    return events
