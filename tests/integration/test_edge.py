"""SEC4/SEC5 at the socket level: smuggling shapes, header limits, Host, slowloris, XFF trust."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Gateway, Mock, gateway

BODY = b'{"model":"chat"}'
FOLLOW = b"GET /mock-never HTTP/1.1\r\nhost: x\r\n\r\n"


@pytest.fixture(scope="module")
def edge_gw(mocks: tuple[Mock, Mock], workdir: Path) -> Iterator[Gateway]:
    one, _ = mocks
    config = {
        "limits": {"max_headers": 50, "max_header_bytes": 8192, "header_timeout_s": 1.0},
        "models": {
            "chat": {"versions": {"v1": {"upstream": {"url": one.url, "model": one.model}}}}
        },
    }
    with gateway(config, workdir) as g:
        yield g


def exchange(gw: Gateway, raw: bytes, timeout: float = 3.0) -> bytes:
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.settimeout(timeout)
        sock.sendall(raw)
        out = b""
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                return out + b"<open>"
            if not data:
                return out
            out += data


def post_head(*headers: bytes) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + b"\r\n"
    )


@pytest.mark.parametrize(
    "raw",
    [
        post_head(b"content-length: 16", b"transfer-encoding: chunked")
        + b"10\r\n"
        + BODY
        + b"\r\n0\r\n\r\n"
        + FOLLOW,
        post_head(b"content-length: 16", b"content-length: 17") + BODY + b"x" + FOLLOW,
        post_head(b"transfer-encoding: xchunked") + BODY + FOLLOW,
        post_head(b"transfer-encoding: chunked, identity") + BODY + FOLLOW,
        post_head(b"content-length : 16") + BODY + FOLLOW,
        post_head(b"content-length: 16", b"x-a: b\r\n c") + BODY + FOLLOW,
        post_head(b"transfer-encoding: chunked") + b"zz\r\n" + BODY + b"\r\n0\r\n\r\n" + FOLLOW,
        post_head(b"x-bad: a\x00b", b"content-length: 16") + BODY + FOLLOW,
    ],
    ids=[
        "cl+te",
        "dup-cl",
        "te-xchunked",
        "te-list",
        "space-before-colon",
        "obs-fold",
        "bad-chunk",
        "nul",
    ],
)
def test_smuggling_shapes_get_400_and_close(edge_gw: Gateway, raw: bytes) -> None:
    out = exchange(edge_gw, raw)
    assert out.startswith(b"HTTP/1.1 400")
    assert out.count(b"HTTP/1.1 ") == 1 and not out.endswith(
        b"<open>"
    )  # closed, follow-up never run


def test_header_count_and_size_limits_431(edge_gw: Gateway) -> None:
    many = (
        b"GET /healthz HTTP/1.1\r\nhost: x\r\n"
        + b"".join(b"x-h%d: v\r\n" % i for i in range(60))
        + b"\r\n"
    )
    assert exchange(edge_gw, many).startswith(b"HTTP/1.1 431")
    sent, reply = 0, b""
    with socket.create_connection(("127.0.0.1", edge_gw.port)) as sock:
        sock.settimeout(2)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ")
            while sent < (1 << 20):
                sock.sendall(b"a" * 4096)
                sent += 4096
                time.sleep(0.001)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            reply = sock.recv(4096)
    assert sent < 256 << 10  # cut off long before the megabyte was accepted
    assert reply == b"" or reply.startswith(b"HTTP/1.1 431")


@pytest.mark.parametrize("hosts", [[b"x", b"y"], [b"evil.com/path"], [b"a@b"], [b"x?q"]])
def test_host_must_be_single_and_plain(edge_gw: Gateway, hosts: list[bytes]) -> None:
    raw = b"GET /healthz HTTP/1.1\r\n" + b"".join(b"host: " + h + b"\r\n" for h in hosts) + b"\r\n"
    assert exchange(edge_gw, raw).startswith(b"HTTP/1.1 400")


def test_slowloris_is_closed_by_the_header_timeout(edge_gw: Gateway) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", edge_gw.port)) as sock:
        sock.settimeout(5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        closed = False
        for _ in range(40):
            try:
                sock.sendall(b"x-slow: 1\r\n")
                if sock.recv(1, socket.MSG_DONTWAIT) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed = True
                break
            time.sleep(0.1)
    assert closed and time.monotonic() - started < 2.5
    assert httpx.get(edge_gw.base + "/healthz").status_code == 200


def test_forwarded_for_is_not_trusted_by_default(edge_gw: Gateway) -> None:
    resp = httpx.post(
        edge_gw.url + "/chat/completions",
        content=BODY,
        headers={"x-forwarded-for": "6.6.6.6", "x-forwarded-proto": "https"},
    )
    assert resp.status_code == 200
    assert "6.6.6.6" not in edge_gw.log()


def test_http11_without_host_is_400_but_http10_may_omit_it(edge_gw: Gateway) -> None:
    assert exchange(edge_gw, b"GET /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert exchange(edge_gw, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("path", [b"GET /v1/models", b"POST /v1/chat/completions"])
def test_repeated_authorization_is_400_on_every_route(edge_gw: Gateway, path: bytes) -> None:
    raw = (
        path + b" HTTP/1.1\r\nhost: x\r\nauthorization: Bearer a\r\nauthorization: Bearer b\r\n"
        b"content-length: 0\r\n\r\n"
    )
    out = exchange(edge_gw, raw)
    assert out.startswith(b"HTTP/1.1 400") and b"Authorization" in out


@pytest.mark.parametrize("path", [b"/v1/models/", b"/healthz/", b"/admin/models/"])
def test_no_redirect_takes_its_host_from_the_client(edge_gw: Gateway, path: bytes) -> None:
    out = exchange(edge_gw, b"GET " + path + b" HTTP/1.1\r\nhost: evil.example\r\n\r\n", 1.0)
    assert b"evil.example" not in out and not out.startswith(b"HTTP/1.1 30")
