"""Header hygiene in both directions (RFC 9110 §7.6.1; docs/security.md).

To the upstream: every client header except hop-by-hop ones (and those `Connection` names),
credentials, cookies, host/length/encoding (set by the transport or by us), forwarding headers
and the gateway's own control headers; then the upstream credential and our request id.
To the client: only an allow-list of upstream response headers, so nothing like `set-cookie`,
credentials or hop-by-hop headers ever passes.
"""

from __future__ import annotations

from collections.abc import Iterable

RawHeaders = Iterable[tuple[bytes, bytes]]
USER_AGENT = "llm-gateway"

HOP_BY_HOP = frozenset(
    b"connection keep-alive proxy-connection te transfer-encoding upgrade trailer "
    b"proxy-authenticate proxy-authorization".split()
)
DROP_TO_UPSTREAM = HOP_BY_HOP | frozenset(
    b"host content-length accept-encoding authorization x-api-key api-key cookie expect "
    b"forwarded x-forwarded-for x-forwarded-host x-forwarded-proto x-forwarded-port x-real-ip "
    b"x-request-id x-gateway-version".split()
)
PASS_TO_CLIENT = frozenset(
    b"content-type content-encoding cache-control retry-after openai-model openai-version "
    b"openai-processing-ms x-ratelimit-limit-requests x-ratelimit-limit-tokens "
    b"x-ratelimit-remaining-requests x-ratelimit-remaining-tokens x-ratelimit-reset-requests "
    b"x-ratelimit-reset-tokens".split()
)


def to_upstream(client: RawHeaders, api_key: str | None, request_id: str) -> list[tuple[str, str]]:
    """The headers sent upstream for a client request with headers `client` (one pass; a second
    only when a `Connection` header names more headers to drop)."""
    out: list[tuple[str, str]] = []
    accept_encoding, user_agent, named = "identity", USER_AGENT, None
    for name, value in client:
        if name in DROP_TO_UPSTREAM or name.startswith(b"x-gateway-"):
            if name == b"accept-encoding":
                accept_encoding = value.decode("latin-1")
            elif name == b"connection":
                named = {token.strip().lower().decode("latin-1") for token in value.split(b",")}
        elif name == b"user-agent":
            user_agent = value.decode("latin-1")
        else:
            out.append((name.decode("latin-1"), value.decode("latin-1")))
    if named:
        out = [(name, value) for name, value in out if name not in named]
        user_agent = USER_AGENT if "user-agent" in named else user_agent
    out.append(("accept-encoding", accept_encoding))
    out.append(("user-agent", user_agent))  # the client's, else ours (never the library's)
    out.append(("x-request-id", request_id))
    if api_key:
        out.append(("authorization", f"Bearer {api_key}"))
    return out


def to_client(upstream: RawHeaders) -> tuple[list[tuple[bytes, bytes]], bytes, bytes]:
    """The upstream response headers a client may see (names lower-cased), and the values of
    `content-type` and `content-encoding` among them (b"" when absent)."""
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
