"""Client keys, model access, pins, and per-key rate limits (GCRA), deterministic."""

from __future__ import annotations

import hashlib
from random import Random

import httpx
import pytest

from gateway.app import App, create_app
from gateway.auth import KeyTable, new_key
from gateway.cli import main
from gateway.config import parse_config
from gateway.config.schema import RateLimit
from gateway.errors import ConfigError
from gateway.ratelimit.gcra import LocalLimiter, RateLimited, gcra
from tests.fakes import FakeTransport
from tests.samples import ENV, GOOD

KEY_A, KEY_B = "key-a-" + "x" * 20, "key-b-" + "y" * 20


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


AUTH = f"""
auth:
  keys:
    - {{id: app-a, sha256: "{digest(KEY_A)}", models: ["*"], rate_limit: {{requests_per_minute: 3}}}}
    - {{id: app-b, sha256: "{digest(KEY_B)}", models: [chat], allow_pins: false}}
"""
EMBED = (
    "  embed:\n    versions:\n      e1: {upstream: {url: 'http://127.0.0.1:9003/v1', model: emb}}\n"
)
TEXT_TWO_MODELS = GOOD + EMBED + AUTH


@pytest.fixture
def app() -> App:
    gw = create_app(parse_config(TEXT_TWO_MODELS, ENV), ENV, rng=Random(1))
    gw.parts.forwarder.transport = FakeTransport()
    return gw


async def post(app: App, model: str, key: str | None, **headers: str) -> httpx.Response:
    if key:
        headers["authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        return await c.post("/v1/chat/completions", json={"model": model}, headers=headers)


@pytest.mark.parametrize(
    "auth", [None, "Bearer", "Bearer wrong", "Basic abc", "Bearer " + "k" * 600]
)
async def test_missing_or_wrong_key_is_401(app: App, auth: str | None) -> None:
    headers = {"authorization": auth} if auth else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        resp = await c.post("/v1/chat/completions", json={"model": "chat"}, headers=headers)
        models = await c.get("/v1/models", headers=headers)
    assert resp.status_code == 401 and models.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
    assert "wrong" not in resp.text


async def test_model_access_and_pins(app: App) -> None:
    assert (await post(app, "chat", KEY_B)).status_code == 200
    denied = await post(app, "embed", KEY_B)
    assert denied.status_code == 403 and "may not use model 'embed'" in denied.text
    unknown = await post(app, "nope", KEY_B)
    assert unknown.status_code == 404 and "known models: chat)" in unknown.text  # not 'embed'
    assert (await post(app, "chat@v2", KEY_B)).status_code == 403
    assert (await post(app, "chat", KEY_B, **{"x-gateway-version": "v2"})).status_code == 403
    assert (await post(app, "chat@v2", KEY_A)).status_code == 200
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        listed = await c.get("/v1/models", headers={"authorization": f"Bearer {KEY_B}"})
    assert [m["id"] for m in listed.json()["data"]] == ["chat"]


@pytest.mark.parametrize(
    ("key", "model", "pin"),
    [
        (KEY_B, "embed@zzz", None),  # a model the key may not use: nothing about its versions
        (KEY_B, "embed", "zzz"),
        (KEY_B, "chat@zzz", None),  # allow_pins: false learns nothing about its own model
        (KEY_B, "chat", "zzz"),
    ],
)
async def test_permission_is_checked_before_any_version_is_looked_up(
    app: App, key: str, model: str, pin: str | None
) -> None:
    headers = {"x-gateway-version": pin} if pin else {}
    denied = await post(app, model, key, **headers)
    assert denied.status_code == 403, denied.text
    assert "zzz" not in denied.text and "v1" not in denied.text and "known" not in denied.text


async def test_rate_limit_429_with_retry_after(app: App) -> None:
    codes = [(await post(app, "chat", KEY_A)).status_code for _ in range(3)]
    limited = await post(app, "chat", KEY_A)
    assert codes == [200, 200, 200] and limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(limited.headers["retry-after"]) == 20  # one request per 20 s at 3/min
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert (await post(app, "chat", KEY_B)).status_code == 200  # other keys unaffected


def test_gcra_is_exact_over_a_minute() -> None:
    tat, admitted = 0.0, 0
    for i in range(6000):  # 100 requests/s for 60 s against 600/min
        tat, verdict = gcra(tat, i / 100, 1, 600)
        admitted += verdict.allowed
    assert admitted == 600 + 599  # a full minute of burst, then the sustained rate
    _, verdict = gcra(100.0, 40.0, 1, 600)
    assert not verdict.allowed and verdict.retry_after == pytest.approx(0.1)


def test_token_reservation_is_reconciled() -> None:
    now = [0.0]
    limiter = LocalLimiter(lambda: now[0])
    limit = RateLimit(tokens_per_minute=1000)
    ticket = limiter.reserve_now("k", limit, {"max_tokens": 500}, 400)  # 100 prompt + 500
    assert ticket is not None and ticket.reserved == 600
    with pytest.raises(RateLimited):
        limiter.reserve_now("k", limit, {"max_tokens": 500}, 400)
    limiter.settle(ticket, 50)  # only 50 used: 550 tokens handed back
    assert limiter.reserve_now("k", limit, {"max_tokens": 500}, 400) is not None


def test_key_config_validation() -> None:
    bad = TEXT_TWO_MODELS.replace(f'"{digest(KEY_B)}"', '"not-hex"').replace(
        "models: [chat]", "models: [chat, ghost]"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(bad, ENV)
    text = "\n".join(info.value.problems)
    assert "auth.keys.1.sha256: sha256 must be 64 lower-case hex digits" in text
    assert "auth.keys.1.models.1: unknown model 'ghost'" in text


def test_keys_new_prints_a_working_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "--id", "svc", "--models", "chat"]) == 0
    out = capsys.readouterr().out
    key = out.split("\n\n")[1].strip()
    assert f'sha256: "{digest(key)}"' in out and 'models: ["chat"]' in out
    table = KeyTable(
        parse_config(GOOD + f'auth: {{keys: [{{id: svc, sha256: "{digest(key)}"}}]}}\n', ENV).auth
    )
    assert table.authenticate(f"Bearer {key}".encode()).id == "svc"
    a, b = new_key(), new_key()
    assert a[0] != b[0] and len(a[0]) > 40
