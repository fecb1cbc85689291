"""SEC3: run many scenarios with canary secrets and scan every response, metric and log line.

Canary values stand in for the upstream keys, the client keys and the admin token. A leaky
upstream echoes our request (URL with `?key=` and all headers) in its error; the gateway must
redact the injected upstream key before relaying that error. Nothing captured — bodies, headers,
`/metrics`, `/v1/models`, OpenAPI, the log — may contain a canary or its first 8 characters.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import leaks
from tests.support import Mock, gateway, secret

UPSTREAM_KEY = secret("sk-canary-upstream-3f9a7c1e5d")
CLIENT_KEY = secret("ck-canary-client-8b2d6e4f0a")
ADMIN_TOKEN = secret("adm-canary-token-1c7e9b3d5f")
OTHER_TOKEN = secret("wrong-canary-guess-6a0f2e8c4b")


def test_no_secret_reaches_a_client_metric_or_log(mocks: tuple[Mock, Mock], workdir: Path) -> None:
    one, two = mocks
    config = {
        "admin": {"token_env": "SEC_ADMIN_TOKEN"},
        "auth": {
            "keys": [{"id": "app", "sha256": hashlib.sha256(CLIENT_KEY.encode()).hexdigest()}]
        },
        "models": {
            "chat": {
                "versions": {
                    "v1": {
                        "upstream": {
                            "url": one.url,
                            "model": one.model,
                            "api_key_env": "SEC_UP_KEY",
                        }
                    },
                    "v2": {
                        "upstream": {
                            "url": two.url,
                            "model": two.model,
                            "api_key_env": "SEC_UP_KEY",
                        }
                    },
                },
                "routing": {"weights": {"v1": 1, "v2": 1}, "timeouts": {"ttft_s": 0.5}},
            }
        },
    }
    env = {"SEC_UP_KEY": UPSTREAM_KEY, "SEC_ADMIN_TOKEN": ADMIN_TOKEN}
    captured: list[str] = []
    with gateway(config, workdir, env=env) as gw, httpx.Client(base_url=gw.base, timeout=10) as c:
        auth = {"authorization": f"Bearer {CLIENT_KEY}"}

        def keep(resp: httpx.Response) -> httpx.Response:
            captured.append(json.dumps(dict(resp.headers)) + "\n" + resp.text)
            return resp

        chat = "/v1/chat/completions"
        assert keep(c.post(chat, json={"model": "chat"}, headers=auth)).status_code == 200
        keep(c.post(chat, json={"model": "chat", "stream": True}, headers=auth))
        leaky = keep(
            c.post(
                chat, json={"model": "chat@v1"}, headers={**auth, "x-mock-fault": "fail:500,echo"}
            )
        )
        assert leaky.status_code == 500 and "[redacted]" in leaky.text  # the upstream did echo it
        for fault in ("cut:2", "stall", "empty", "fail:401,echo", "fail:429,echo"):
            keep(
                c.post(
                    chat,
                    json={"model": "chat@v2", "stream": True},
                    headers={**auth, "x-mock-fault": fault},
                )
            )
        for bad in (
            f"Bearer {OTHER_TOKEN}",
            f"Bearer {CLIENT_KEY}x",
            CLIENT_KEY,
            f"Bearer {ADMIN_TOKEN}",
        ):
            keep(c.post(chat, json={"model": "chat"}, headers={"authorization": bad}))
            keep(c.get("/admin/models", headers={"authorization": bad}))
        keep(c.get(f"/admin/models?token={ADMIN_TOKEN}"))
        keep(c.post(chat, content=b"{bad json " + CLIENT_KEY.encode(), headers=auth))
        for own in (f"chat@{CLIENT_KEY}", CLIENT_KEY):  # the caller's own input may come back to it
            echoed = c.post(chat, json={"model": own}, headers=auth).text
            assert UPSTREAM_KEY[:8] not in echoed and ADMIN_TOKEN[:8] not in echoed
        keep(c.get("/admin/models", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}))
        keep(c.post("/admin/reload", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}))
        keep(c.get("/v1/models", headers=auth))
        keep(c.get("/openapi.json"))
        keep(c.get("/metrics"))
        log = gw.log()
    for text in [*captured, log]:
        assert not leaks(text), f"secret found: {leaks(text)[0][:3]}… in {text[:200]}"
    assert any('"event":"access"' in line for line in log.splitlines())


def test_sdk_at_defaults_never_sees_an_echoed_upstream_key(
    mocks: tuple[Mock, Mock], workdir: Path
) -> None:
    """The official SDK asks for gzip; an upstream that echoes its key in gzip-compressed errors,
    bodies and streams (split mid-key) must still hand the client and the log nothing."""
    one, _ = mocks
    upstream = {"url": one.url, "model": one.model, "api_key_env": "K"}
    config = {
        "auth": {
            "keys": [{"id": "app", "sha256": hashlib.sha256(CLIENT_KEY.encode()).hexdigest()}]
        },
        "models": {"chat": {"versions": {"v1": {"upstream": upstream}}}},
    }
    captured: list[str] = []
    with gateway(config, workdir, env={"K": UPSTREAM_KEY}) as gw:
        sdk = openai.OpenAI(base_url=gw.base + "/v1", api_key=CLIENT_KEY, max_retries=0)
        chat = sdk.chat.completions
        say = [{"role": "user", "content": "hi"}]
        for fault in ("echo,gzip", "echo,gzip-asked", "echo"):
            head = {"x-mock-fault": fault}
            raw = chat.with_raw_response.create(model="chat", messages=say, extra_headers=head)
            assert raw.headers.get("content-encoding") is None
            captured.append(raw.http_response.text)
            assert "[redacted]" in raw.http_response.text  # the upstream did echo it
            with chat.with_streaming_response.create(
                model="chat", messages=say, stream=True, extra_headers=head
            ) as streamed:
                text = streamed.read().decode()
            captured.append(text)
            assert "[redacted]" in text and text.rstrip().endswith("data: [DONE]")
            with pytest.raises(openai.InternalServerError) as failed:
                chat.create(
                    model="chat", messages=say, extra_headers={"x-mock-fault": f"fail:500,{fault}"}
                )
            captured.append(failed.value.response.text)
            assert "[redacted]" in failed.value.response.text
        assert one.stats()["last_headers"]["accept-encoding"] == "identity"
        log = gw.log()
    for text in [*captured, log]:
        assert not leaks(text), f"secret found: {leaks(text)[0][:3]}… in {text[:200]}"


@pytest.mark.parametrize("secret_value", [UPSTREAM_KEY, CLIENT_KEY, ADMIN_TOKEN])
def test_scanner_finds_what_it_should(secret_value: str) -> None:
    assert leaks(f"prefix {secret_value} suffix") and leaks(f"x{secret_value[:8]}y")
    assert not leaks("nothing to see here")
