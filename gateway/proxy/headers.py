"""Header hygiene in both directions (RFC 9110 §7.6.1; docs/security.md).

To the upstream: an allow-list of client headers (`content-type`, `accept`, `user-agent`,
`openai-*`, `traceparent`/`tracestate`, plus a version's configured `forward_headers`), minus any
named by a `Connection` field (every such field counts: RFC 9110 combines them); then
`accept-encoding: identity` (a compressed answer could not be redacted), the upstream credential
and our request id. Anything else -- forwarding headers, credentials, cookies -- never passes.
To the client: only an allow-list of upstream response headers, so nothing like `set-cookie`,
credentials or hop-by-hop headers ever passes; never `content-encoding`, since the gateway
decodes whatever an upstream compresses anyway before it relays (and redacts) it.
"""

from __future__ import annotations

from collections.abc import Iterable

RawHeaders = Iterable[tuple[bytes, bytes]]
USER_AGENT = "llm-gateway"

FORWARD_TO_UPSTREAM = frozenset(b"content-type accept traceparent tracestate".split())
PASS_TO_CLIENT = frozenset(
    b"content-type cache-control retry-after openai-model openai-version "
    b"openai-processing-ms x-ratelimit-limit-requests x-ratelimit-limit-tokens "
    b"x-ratelimit-remaining-requests x-ratelimit-remaining-tokens x-ratelimit-reset-requests "
    b"x-ratelimit-reset-tokens".split()
)
NO_EXTRAS: frozenset[bytes] = frozenset()


def to_upstream(
    client: RawHeaders,
    api_key: str | None,
    request_id: str,
    extras: frozenset[bytes] = NO_EXTRAS,
) -> list[tuple[str, str]]:
    """The headers sent upstream for a client request with headers `client` (one pass; a second
    only when a `Connection` header names headers that passed). `extras`: lower-case names a
    version's config also forwards."""
    out: list[tuple[str, str]] = []
    user_agent, named = USER_AGENT, None
    for name, value in client:
        if name in FORWARD_TO_UPSTREAM or name.startswith(b"openai-") or name in extras:
            out.append((name.decode("latin-1"), value.decode("latin-1")))
        elif name == b"user-agent":
            user_agent = value.decode("latin-1")
        elif name == b"connection":
            tokens = {token.strip().lower().decode("latin-1") for token in value.split(b",")}
            named = tokens if named is None else named | tokens
    if named:
        out = [(name, value) for name, value in out if name not in named]
        user_agent = USER_AGENT if "user-agent" in named else user_agent
    out.append(("accept-encoding", "identity"))
    out.append(("user-agent", user_agent))  # the client's, else ours (never the library's)
    out.append(("x-request-id", request_id))
    if api_key:
        out.append(("authorization", f"Bearer {api_key}"))
    return out


def to_client(upstream: RawHeaders) -> tuple[list[tuple[bytes, bytes]], bytes, bytes]:
    """The upstream response headers a client may see (names lower-cased), and the values of
    the upstream's `content-type` and `content-encoding` (b"" when absent)."""
    out = []
    content_type = encoding = b""
    for name, value in upstream:
        lower = name.lower()
        if lower in PASS_TO_CLIENT:
            out.append((lower, value))
            if lower == b"content-type":
                content_type = value
        elif lower == b"content-encoding":
            encoding = value
        elif lower == b"x-request-id":
            out.append((b"x-upstream-request-id", value))
    return out, content_type, encoding
