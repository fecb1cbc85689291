"""SEC2 (no request can choose the destination) and SEC6 (a malicious upstream is contained)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile import HostileUpstream, Sentinel
from tests.support import Gateway, Mock, gateway


@pytest.fixture(scope="module")
def sentinel() -> Iterator[Sentinel]:
    s = Sentinel()
    yield s
    s.close()


@pytest.fixture(scope="module")
def hostile(sentinel: Sentinel) -> Iterator[HostileUpstream]:
    h = HostileUpstream(redirect_to=sentinel.port)
    yield h
    h.close()


@pytest.fixture(scope="module")
def hgw(mocks: tuple[Mock, Mock], hostile: HostileUpstream, workdir: Path) -> Iterator[Gateway]:
    one, _ = mocks
    config = {
        "limits": {"max_response_bytes": 4 << 20},
        "models": {
            "chat": {"versions": {"v1": {"upstream": {"url": one.url, "model": one.model}}}},
            "evil": {
                "versions": {"v1": {"upstream": {"url": hostile.url, "model": "evil"}}},
                "routing": {"retry": {"attempts": 1}, "timeouts": {"ttft_s": 3, "idle_s": 2}},
            },
        },
    }
    with gateway(config, workdir) as g:
        yield g


DESTINATIONS = st.sampled_from(
    [
        "http://127.0.0.1:{p}/v1",
        "127.0.0.1:{p}",
        "http://169.254.169.254/latest",
        "//127.0.0.1:{p}",
        "http://user@127.0.0.1:{p}#frag",
        "file:///etc/passwd",
    ]
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    dest=DESTINATIONS,
    field=st.sampled_from(["api_base", "base_url", "url", "endpoint", "model"]),
    header=st.sampled_from(
        ["x-upstream-url", "x-forwarded-host", "x-gateway-version", "x-api-base", "forwarded"]
    ),
)
def test_no_request_field_or_header_reaches_another_destination(
    hgw: Gateway, mocks: tuple[Mock, Mock], sentinel: Sentinel, dest: str, field: str, header: str
) -> None:
    target = dest.format(p=sentinel.port)
    body = {"model": "chat", field: target} if field != "model" else {"model": f"chat@{target}"}
    resp = httpx.post(
        hgw.url + "/chat/completions", json=body, headers={header: target}, timeout=10
    )
    assert resp.status_code in (200, 400, 404)
    assert sentinel.connections == 0
    assert mocks[0].stats()["last_headers"]["host"] == f"127.0.0.1:{mocks[0].port}"


def test_redirects_are_never_followed(
    hgw: Gateway, hostile: HostileUpstream, sentinel: Sentinel
) -> None:
    hostile.mode = "redirect"
    resp = httpx.post(hgw.url + "/chat/completions", json={"model": "evil"}, timeout=10)
    assert resp.status_code == 502 and sentinel.connections == 0


@pytest.mark.parametrize(
    ("mode", "stream", "check"),
    [
        ("huge-json", False, "502"),
        ("endless-line", True, "error-event"),
        ("done-then-more", True, "done"),
        ("bad-utf8", False, "filtered"),
        ("bad-utf8-and-headers", False, "502-or-filtered"),
        ("short-body", False, "502"),
        ("switching", False, "502"),
    ],
)
def test_malicious_upstream_is_contained(
    hgw: Gateway, hostile: HostileUpstream, mode: str, stream: bool, check: str
) -> None:
    hostile.mode = mode
    resp = httpx.post(
        hgw.url + "/chat/completions", json={"model": "evil", "stream": stream}, timeout=20
    )
    if check == "502":
        assert resp.status_code == 502 and resp.json()["error"]["code"]
    elif check == "error-event":
        events = [line for line in resp.text.split("\n\n") if line.strip()]
        assert (
            json.loads(events[-1].removeprefix("data: "))["error"]["code"] == "upstream_disconnect"
        )
        assert len(resp.content) < 64 << 10  # the endless line was never relayed
    elif check == "done":
        assert resp.status_code == 200 and "[DONE]" in resp.text  # relayed as sent, framing intact
    elif resp.status_code != 502 or check == "filtered":
        assert resp.status_code == 200 and resp.content == b'{"text": "\xff\xfe bad"}'
        assert "set-cookie" not in resp.headers and "authorization" not in resp.headers
        assert "x-injected" not in resp.headers
        assert not any(k.startswith("x-many") for k in resp.headers)
    assert httpx.get(hgw.base + "/healthz").status_code == 200
