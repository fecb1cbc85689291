"""The published OpenAPI document: FastAPI's routes plus the data-plane endpoints.

The proxy endpoints (and the calls on a Responses API id) are served by a pure ASGI callable
(no framework on the hot path), so FastAPI cannot see them; this module adds them to the schema
by hand: the request fields the gateway itself reads (`model`, `stream`; everything else passes
through to the upstream), the answers (JSON or server-sent events) and every error status the
gateway can return.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
ERRORS = {
    "400": "Invalid JSON or fields",
    "401": "Missing or invalid API key",
    "403": "The key may not use this model or pin",
    "404": "Unknown model, version or alias, or an endpoint the model does not offer",
    "413": "Request body too large",
    "429": "Rate limit exceeded (see Retry-After)",
    "502": "Upstream failed before answering",
    "503": "Overloaded, no healthy version, or shutting down (see Retry-After)",
    "504": "Upstream gave no first byte in time",
}
BODY = {
    "type": "object",
    "required": ["model"],
    "properties": {
        "model": {
            "type": "string",
            "minLength": 1,
            "description": "`chat`, `chat@v2` (a version) or `chat@stable` (an alias)",
        },
        "stream": {"type": "boolean"},
    },
    "additionalProperties": True,
}
UPLOAD = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["model", "file"],
            "properties": {
                "model": BODY["properties"]["model"],  # type: ignore[index]
                "file": {"type": "string", "format": "binary"},
            },
        }
    }
}


def _operation(summary: str, models: list[str]) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "The upstream's answer, relayed unchanged",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        }
    }
    for status, text in ERRORS.items():
        responses[status] = {
            "description": text,
            "content": {"application/json": {"schema": ERROR}},
        }
    return {
        "summary": summary,
        "tags": ["openai"],
        "parameters": [
            {
                "name": "x-gateway-version",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "pin a version or alias",
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": BODY,
                    "examples": {
                        m: {"value": {"model": m, "messages": [{"role": "user", "content": "hi"}]}}
                        for m in models
                    },
                }
            },
        },
        "responses": responses,
    }


def _by_id() -> dict[str, Any]:
    """The calls on a response id, relayed to the version that created it."""
    rid = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    answers = {
        "200": {"description": "The upstream's answer, relayed unchanged"},
        "404": {
            "description": "Unknown or expired response id",
            "content": {"application/json": {"schema": ERROR}},
        },
    }

    def op(summary: str) -> dict[str, Any]:
        return {"summary": summary, "tags": ["openai"], "parameters": [rid], "responses": answers}

    return {
        "/v1/responses/{id}": {"get": op("Retrieve a response"), "delete": op("Delete a response")},
        "/v1/responses/{id}/cancel": {"post": op("Cancel a background response")},
        "/v1/responses/{id}/input_items": {"get": op("List a response's input items")},
    }


def install(web: FastAPI, models: Callable[[], list[str]]) -> None:
    """Make `web.openapi()` include the data-plane endpoints (with `models()` as examples)."""

    def openapi() -> dict[str, Any]:
        if web.openapi_schema is None:
            schema = get_openapi(title=web.title, version=web.version, routes=web.routes)
            paths = schema.setdefault("paths", {})
            for path, summary in (
                ("/v1/chat/completions", "Chat completion (OpenAI wire format)"),
                ("/v1/completions", "Text completion (OpenAI wire format)"),
                ("/v1/embeddings", "Embeddings (OpenAI wire format)"),
                ("/v1/responses", "Responses API: create (follow-ups stay on their version)"),
                ("/v1/images/generations", "Image generation (pass-through)"),
                ("/v1/audio/speech", "Speech synthesis (pass-through; audio bytes)"),
                ("/v1/audio/transcriptions", "Transcription (multipart, streamed through)"),
                ("/v1/moderations", "Moderation (pass-through)"),
                ("/v1/rerank", "Rerank (pass-through, Cohere/Jina shape)"),
            ):
                paths[path] = {"post": _operation(summary, models())}
            upload = paths["/v1/audio/transcriptions"]["post"]
            upload["requestBody"] = {"required": True, "content": UPLOAD}
            paths.update(_by_id())
            web.openapi_schema = schema
        return web.openapi_schema

    web.openapi = openapi  # type: ignore[method-assign]
