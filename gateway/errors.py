"""The gateway's one exception tree, and its OpenAI-shaped rendering.

Every failure a client can see is a `GatewayError` subclass carrying its HTTP status and the
OpenAI error `type`/`code`; third-party exceptions (aiohttp, YAML, pydantic) are mapped onto this
tree at the boundary where they occur (`upstream.py`, `config/`), never further in.
"""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    """Base of everything the gateway raises on purpose."""

    status = 500
    type = "server_error"
    code: str | None = None
    param: str | None = None  # the request field the error is about, when there is one
    outcome = "rejected"  # the outcome class recorded for the request (see exchange.py)

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if param is not None:
            self.param = param

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Extra response headers this error carries (Retry-After, rate-limit state)."""
        return []

    def body(self) -> bytes:
        """The error as OpenAI's JSON shape: {"error": {"message", "type", "param", "code"}}."""
        return orjson.dumps({"error": self.fields()})

    def fields(self) -> dict[str, str | None]:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}


class ConfigError(GatewayError):
    """A configuration was rejected; `problems` lists every reason (path, line and message)."""

    status = 422
    type = "invalid_config"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems) or "invalid configuration")
        self.problems = problems


class ClientError(GatewayError):
    """The request itself is wrong: never counted against a model version."""

    status = 400
    type = "invalid_request_error"
    outcome = "client_error"


class BadRequest(ClientError):
    code = "bad_request"


class ModelNotFound(ClientError):
    status = 404
    code = "model_not_found"


class NotFound(ClientError):
    """No such endpoint for this model, no such response id, or no such admin override."""

    status = 404
    code = "not_found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allow: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"allow", ", ".join(self.allow).encode())]


class PayloadTooLarge(ClientError):
    status = 413
    code = "request_too_large"


class BodyTimeout(ClientError):
    """The request body did not arrive within `limits.body_timeout_s`."""

    status = 408
    code = "body_timeout"


class KeyOverloaded(ClientError):
    """One API key has as many requests in flight as it may (`auth.keys[].max_inflight`)."""

    status = 429
    type = "rate_limit_error"
    code = "key_inflight_limit"

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", b"1")]


class ClientDisconnected(ClientError):
    """The client went away before the answer was complete (logged as 499, never sent)."""

    status = 499
    code = "client_disconnected"
    outcome = "client_cancel"


class UpstreamError(GatewayError):
    """The chosen version's upstream failed before anything reached the client."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    outcome = "upstream_error"


class UpstreamConnectError(UpstreamError):
    code = "upstream_connect_failed"
    outcome = "connect_error"


class UpstreamReset(UpstreamError):
    """The connection broke before any answer (reset, closed, or headers with an empty body)."""

    code = "upstream_reset"


class UpstreamStatus(UpstreamError):
    """A retryable error status (5xx, 429) that was not relayed because another try follows."""

    code = "upstream_status"

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"upstream answered {status}")
        self.upstream_status = status
        self.retry_after = retry_after
        self.outcome = "rate_limited" if status == 429 else "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout"
    code = "upstream_timeout"
    outcome = "timeout"


class Unavailable(GatewayError):
    """No version can take the request now (overload, nothing healthy, draining)."""

    status = 503
    type = "unavailable"
    code = "unavailable"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(self.retry_after).encode())]


class StoreError(GatewayError):
    """The live-metrics store failed (never seen by clients: the gateway falls back to local)."""

    status = 503
    type = "store_error"
    code = "store_error"


class StoreUnavailable(StoreError):
    """The store refused the call, dropped the connection or answered with an error."""

    code = "store_unavailable"


class StoreTimeout(StoreError):
    """The store did not answer in time (a write may or may not have been applied)."""

    code = "store_timeout"


class RegistryError(GatewayError):
    """The model registry failed or answered something unusable (never seen by clients: the
    gateway keeps serving its last good view of the registry)."""

    status = 502
    type = "registry_error"
    code = "registry_error"


class RegistryNotFound(RegistryError):
    """The registry says the registered model (or version) does not exist."""

    code = "registry_not_found"
