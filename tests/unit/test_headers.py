"""Header hygiene in both directions."""

from __future__ import annotations

from gateway.proxy.headers import to_client, to_upstream


def test_to_upstream_forwards_an_allow_list_and_asks_for_identity() -> None:
    client = [
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer client"),
        (b"x-api-key", b"client"),
        (b"connection", b"keep-alive, X-Secret-Hop"),
        (b"x-secret-hop", b"1"),
        (b"te", b"trailers"),
        (b"upgrade", b"h2c"),
        (b"proxy-authorization", b"x"),
        (b"host", b"evil"),
        (b"content-length", b"5"),
        (b"x-forwarded-for", b"1.2.3.4"),
        (b"x-gateway-version", b"v2"),
        (b"x-gateway-anything", b"1"),
        (b"cookie", b"a=b"),
        (b"user-agent", b"OpenAI/Python"),
        (b"x-session-id", b"s1"),
        (b"accept-encoding", b"gzip, deflate"),
        (b"accept", b"application/json"),
        (b"openai-beta", b"assistants=v2"),
        (b"traceparent", b"00-abc-def-01"),
        (b"x-forwarded-server", b"evil"),
        (b"x-forwarded-prefix", b"/x"),
        (b"x-original-forwarded-for", b"1.2.3.4"),
        (b"via", b"1.1 evil"),
        (b"true-client-ip", b"1.2.3.4"),
        (b"cf-connecting-ip", b"1.2.3.4"),
        (b"x-client-ip", b"1.2.3.4"),
        (b"x-original-url", b"/admin"),
        (b"x-rewrite-url", b"/admin"),
    ]
    out = dict(to_upstream(client, "sk-up", "rid"))
    assert out == {
        "content-type": "application/json",
        "accept": "application/json",
        "openai-beta": "assistants=v2",
        "traceparent": "00-abc-def-01",
        "user-agent": "OpenAI/Python",
        "accept-encoding": "identity",
        "x-request-id": "rid",
        "authorization": "Bearer sk-up",
    }


def test_every_connection_field_counts_and_extras_are_forwarded() -> None:
    client = [
        (b"connection", b"accept"),
        (b"accept", b"a"),
        (b"x-session-id", b"s1"),
        (b"x-tenant", b"t"),
        (b"connection", b"x-tenant"),
        (b"traceparent", b"t"),
    ]
    out = dict(to_upstream(client, None, "rid", frozenset({b"x-session-id", b"x-tenant"})))
    assert out == {
        "x-session-id": "s1",
        "traceparent": "t",
        "accept-encoding": "identity",
        "x-request-id": "rid",
        "user-agent": "llm-gateway",
    }


def test_to_upstream_without_key_or_encoding() -> None:
    out = dict(to_upstream([], None, "rid"))
    assert out == {
        "accept-encoding": "identity",
        "x-request-id": "rid",
        "user-agent": "llm-gateway",
    }


def test_to_client_allow_list() -> None:
    upstream = [
        (b"Content-Type", b"text/event-stream"),
        (b"set-cookie", b"a=b"),
        (b"authorization", b"x"),
        (b"x-goog-api-key", b"k"),
        (b"connection", b"close"),
        (b"keep-alive", b"5"),
        (b"transfer-encoding", b"chunked"),
        (b"content-length", b"10"),
        (b"x-request-id", b"up-1"),
        (b"openai-processing-ms", b"12"),
        (b"retry-after", b"3"),
        (b"server", b"vllm"),
    ]
    assert to_client(upstream) == (
        [
            (b"content-type", b"text/event-stream"),
            (b"x-upstream-request-id", b"up-1"),
            (b"openai-processing-ms", b"12"),
            (b"retry-after", b"3"),
        ],
        b"text/event-stream",
        b"",
    )
    assert to_client([(b"Content-Encoding", b"gzip")]) == (
        [],  # decoded by the gateway: never relayed
        b"",
        b"gzip",
    )
