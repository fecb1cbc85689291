"""Issue 6 §4: the status page at /admin/ui, its login session, and what it shows.

In-process checks: the page and every admin read reject missing, wrong and malformed session
cookies with 401 (never echoing them), the cookie never admits writes, and `POST /admin/session`
sets a hardened cookie that is not the token. End to end: a real gateway under traffic, headless
Chromium (Debian `chromium`, driven by Playwright) signs in through the form, and every number the
page shows equals `GET /admin/models/{model}/stats` read just before or just after (one refresh),
weights equal the admin API and `/metrics` exactly; a screenshot is saved for people to look at.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from random import Random
from typing import Any

import httpx
import pytest

from gateway.app import App, create_app
from gateway.config import parse_config
from gateway.control.store import MemoryControl
from gateway.web import admin_auth
from tests.samples import GOOD
from tests.support import (
    Gateway,
    ManualClock,
    gateway,
    mock_upstream,
    require_binary,
    secret,
    version,
)

TOKEN = secret("sp-9f4c2a7e1b6d3f08-admin")  # random-looking: the leak scan matches prefixes
ENV = {"V2_KEY": "secret", "ADMIN_TOKEN": TOKEN}
WITH_ADMIN = GOOD + "admin: {token_env: ADMIN_TOKEN}\n"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OLD_SESSION = hmac.new(  # what the cookie used to be: a fixed digest of the token
    TOKEN.encode(), b"llm-version-gateway admin ui session v1", hashlib.sha256
).hexdigest()
BAD_COOKIES = [
    "",
    "x",
    TOKEN,  # the raw token is not a session
    OLD_SESSION,  # nor a digest of it
    hashlib.sha256(TOKEN.encode()).hexdigest(),
    "' OR '1'='1",
    "ü" * 40,
    "a" * 4000,
]
FIELDS = {
    "weight": "weight",
    "rps": "requests_per_s",
    "err": "error_rate",
    "p95": "latency_p95_ms",
    "ttft": "ttft_p95_ms",
}
SHOTS = Path(__file__).resolve().parents[2] / "bench" / "out"


def in_process() -> App:
    return create_app(parse_config(WITH_ADMIN, ENV), ENV, rng=Random(0))


async def call(
    gw: App, method: str, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as c:
        raw = {k: v.encode() for k, v in (headers or {}).items()}  # malformed bytes too
        return await c.request(method, path, headers=raw)


@pytest.mark.parametrize("value", BAD_COOKIES, ids=range(len(BAD_COOKIES)))
@pytest.mark.parametrize("path", ["/admin/ui", "/admin/models", "/admin/models/chat/stats"])
async def test_bad_session_cookies_are_rejected(path: str, value: str) -> None:
    resp = await call(in_process(), "GET", path, {"cookie": f"{admin_auth.COOKIE}={value}"})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_admin_token"
    assert not value or value not in resp.text
    assert TOKEN not in resp.text


async def session(gw: App) -> tuple[str, str]:
    """Sign in: (cookie value, the whole Set-Cookie header)."""
    resp = await call(gw, "POST", "/admin/session", {"authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 204
    header = resp.headers["set-cookie"]
    return header.split(";")[0].split("=", 1)[1], header


async def test_session_cookie_admits_reads_only() -> None:
    gw = in_process()
    cookie = {"cookie": f"{admin_auth.COOKIE}={(await session(gw))[0]}"}
    page = await call(gw, "GET", "/admin/ui", cookie)
    assert page.status_code == 200 and "<title>Gateway status</title>" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    assert page.headers["cache-control"] == "no-store"
    assert (await call(gw, "GET", "/admin/models", cookie)).status_code == 200
    assert (await call(gw, "POST", "/admin/reload", cookie)).status_code == 401
    assert (await call(gw, "POST", "/admin/session", cookie)).status_code == 401
    wrong_header = {**cookie, "authorization": f"Bearer {TOKEN}x"}
    assert (await call(gw, "GET", "/admin/models", wrong_header)).status_code == 401


async def test_session_sets_a_hardened_cookie_that_is_not_the_token() -> None:
    gw = in_process()
    assert (await call(gw, "POST", "/admin/session")).status_code == 401
    value, cookie = await session(gw)
    for attribute in ("HttpOnly", "Path=/admin", "SameSite=strict", "Max-Age=28800"):
        assert attribute.lower() in cookie.lower(), attribute
    assert "secure" not in cookie.lower()  # plain http, `secure_cookie: auto`
    assert TOKEN not in cookie and value not in (OLD_SESSION, TOKEN)
    login = await call(gw, "GET", "/login")
    assert login.status_code == 200 and 'type="password"' in login.text
    out = await call(gw, "GET", "/logout")
    assert out.status_code == 303 and out.headers["location"] == "/admin/logout"


async def test_sessions_are_random_expiring_and_revoked_by_logout() -> None:
    """Issue 14 §7: the session was a fixed digest of the token — the same for every login,
    never expiring on the server, still valid after /logout, and a way to test token guesses
    offline. Now: a fresh random id per sign-in, kept server-side, ended by sign-out."""
    gw = in_process()
    first, _ = await session(gw)
    second, _ = await session(gw)
    assert first != second and len(first) >= 43
    jar = {"cookie": f"{admin_auth.COOKIE}={first}"}
    assert (await call(gw, "GET", "/admin/models", jar)).status_code == 200
    out = await call(gw, "GET", "/admin/logout", jar)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert f'{admin_auth.COOKIE}=""' in out.headers["set-cookie"]
    assert (await call(gw, "GET", "/admin/models", jar)).status_code == 401  # revoked
    other = {"cookie": f"{admin_auth.COOKIE}={second}"}
    assert (await call(gw, "GET", "/admin/models", other)).status_code == 200  # only that one
    assert (await call(gw, "GET", "/admin/logout")).status_code == 303  # no cookie: harmless


async def test_sessions_expire_on_the_server() -> None:
    text = WITH_ADMIN.replace(
        "admin: {token_env: ADMIN_TOKEN}", "admin: {token_env: ADMIN_TOKEN, session_ttl_s: 60}"
    )
    clock = ManualClock()
    gw = create_app(parse_config(text, ENV), ENV, rng=Random(0))
    store = gw.parts.control.plane.store
    assert isinstance(store, MemoryControl)
    store._clock = clock
    value, cookie = await session(gw)
    assert "max-age=60" in cookie.lower()
    jar = {"cookie": f"{admin_auth.COOKIE}={value}"}
    assert (await call(gw, "GET", "/admin/models", jar)).status_code == 200
    clock.now += 61  # a browser that ignores Max-Age still holds the cookie
    assert (await call(gw, "GET", "/admin/models", jar)).status_code == 401


@pytest.mark.parametrize(
    ("setting", "scheme", "secure"),
    [("auto", "http", False), ("auto", "https", True), ("always", "http", True)],
)
async def test_secure_cookie_follows_the_listener(setting: str, scheme: str, secure: bool) -> None:
    text = WITH_ADMIN.replace(
        "admin: {token_env: ADMIN_TOKEN}",
        f"admin: {{token_env: ADMIN_TOKEN, secure_cookie: {setting}}}",
    )
    gw = create_app(parse_config(text, ENV), ENV, rng=Random(0))
    transport = httpx.ASGITransport(app=gw)
    async with httpx.AsyncClient(transport=transport, base_url=f"{scheme}://gw") as c:
        resp = await c.post("/admin/session", headers={"authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 204
    assert ("; secure" in resp.headers["set-cookie"].lower()) is secure


# --- end to end: a gateway under traffic, headless Chromium -------------------------------


@pytest.fixture(scope="module")
def live_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("status-page")
    with (
        mock_upstream("base-8b", "--latency-ms", "8", log_dir=tmp) as one,
        mock_upstream("ft-8b", "--latency-ms", "20", "--error-rate", "0.1", log_dir=tmp) as two,
    ):
        meta1 = {"run_id": "run-381", "created": "2026-09-01", "description": "baseline"}
        meta2 = {"run_id": "run-402", "created": "2026-09-20", "params": {"lr": 3.0e-5}}
        config = {
            "admin": {"token_env": "STATUS_ADMIN_TOKEN"},
            "store": {"bucket_s": 1, "window_s": 30},
            "models": {
                "chat": {
                    "aliases": {"stable": "v1", "canary": "v2"},
                    "versions": {
                        "v1": version(one.url, one.model, metadata=meta1),
                        "v2": version(two.url, two.model, metadata=meta2),
                    },
                    "routing": {"weights": {"v1": 75, "v2": 25}},
                }
            },
        }
        with gateway(config, tmp, env={"STATUS_ADMIN_TOKEN": TOKEN}) as gw:
            yield gw


class Traffic:
    """A background thread sending ~30 requests/s, half of them streamed."""

    def __init__(self, gw: Gateway) -> None:
        self.gw, self.stop = gw, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.gw.url, timeout=10) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
                try:
                    if n % 2:
                        with client.stream(
                            "POST", "/chat/completions", json={**body, "stream": True}
                        ) as r:
                            r.read()
                    else:
                        client.post("/chat/completions", json=body)
                except httpx.HTTPError:
                    pass
                time.sleep(0.03)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def api_stats(gw: Gateway) -> dict[str, Any]:
    auth = {"authorization": f"Bearer {TOKEN}"}
    body = httpx.get(f"{gw.base}/admin/models/chat/stats", headers=auth, timeout=5).json()
    return {
        (v, key): s[field] for v, s in body["versions"].items() for key, field in FIELDS.items()
    }


def shown(page: Any) -> dict[str, Any]:
    """Every data-testid on the page: (text, data-value)."""
    return dict(
        page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('[data-testid]')]
                 .map(e => [e.dataset.testid, [e.textContent, e.dataset.value ?? null]]))"""
        )
    )


def page_values(cells: dict[str, Any]) -> dict[tuple[str, str], float | None]:
    values = {}
    for v in ("v1", "v2"):
        for key in FIELDS:
            raw = cells[f"{key}-chat-{v}"][1]
            values[(v, key)] = float(raw) if raw else None
    return values


def expected_text(key: str, value: float | None) -> str:
    if value is None:
        return "–"
    scaled = 100 * value if key in ("weight", "err") else value
    digits = 2 if key in ("rps", "err") else 1
    return f"{scaled:.{digits}f}"


def metrics_weights(gw: Gateway) -> dict[str, float]:
    text = httpx.get(f"{gw.base}/metrics", timeout=5).text
    pattern = r'^gateway_routing_weight\{model="chat",version="(\w+)"\} (\S+)$'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, text, re.M)}


def compare_with_api(gw: Gateway, page: Any) -> int:
    """Read the page between two API reads; returns how many reads saw one unchanged snapshot."""
    stable = 0
    for _ in range(25):
        before = api_stats(gw)
        began = time.time() * 1000
        page.wait_for_function(
            "(t) => Number(document.body.dataset.pollStarted) > t", arg=began, timeout=10_000
        )
        cells = shown(page)
        after = api_stats(gw)
        took = time.time() * 1000 - began
        values = page_values(cells)
        for (v, key), value in values.items():
            assert cells[f"{key}-chat-{v}"][0] == expected_text(key, value), (v, key)
        if took < 900:  # at most one store refresh in between: the page shows one of the two
            assert values in (before, after), (values, before, after)
        stable += before == after
        if stable >= 3:
            break
    return stable


def test_status_page_in_chromium_matches_admin_api(live_gw: Gateway, tmp_path: Path) -> None:
    chromium = require_binary("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    gw = live_gw
    with Traffic(gw), sync_api.sync_playwright() as pw:
        time.sleep(3)  # some samples in the window first
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 768})
            page = context.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if bad_console(m) else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            assert page.goto(f"{gw.base}/admin/ui").status == 401  # no session yet
            sign_in(page, gw)
            page.goto(f"{gw.base}/admin/ui?every=400")
            page.wait_for_function(
                "() => Number(document.body.dataset.polls) >= 3 && "
                "document.querySelector('[data-testid=p95-chat-v2]').textContent !== '–'",
                timeout=20_000,
            )
            assert compare_with_api(gw, page) >= 2
            check_weights_and_panels(gw, page)
            time.sleep(2)  # a few more chart points before the picture
            screenshot(page, tmp_path)
            canary_panel(page, tmp_path)
            assert not problems, problems
        finally:
            browser.close()


def bad_console(message: Any) -> bool:
    """Console errors other than expected HTTP statuses (401 before sign-in, 404 of no canary)."""
    return bool(message.type == "error" and "Failed to load resource" not in message.text)


def sign_in(page: Any, gw: Gateway) -> None:
    page.goto(f"{gw.base}/login")
    page.fill("#token", TOKEN + "-wrong")
    page.click("button[type=submit]")
    page.wait_for_function("() => document.getElementById('msg').textContent.includes('401')")
    assert TOKEN not in page.content()
    assert page.context.cookies() == []
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{gw.base}/admin/ui")
    (cookie,) = page.context.cookies()
    assert cookie["name"] == admin_auth.COOKIE and cookie["httpOnly"] and cookie["path"] == "/admin"
    assert cookie["value"] != TOKEN


def check_weights_and_panels(gw: Gateway, page: Any) -> None:
    cells = shown(page)
    auth = {"authorization": f"Bearer {TOKEN}"}
    listing = httpx.get(f"{gw.base}/admin/models", headers=auth, timeout=5).json()
    api = {v["version"]: v["weight"] for v in listing["data"][0]["versions"]}
    on_page = {v: float(cells[f"weight-chat-{v}"][1]) for v in ("v1", "v2")}
    assert on_page == api == metrics_weights(gw) == {"v1": 0.75, "v2": 0.25}
    assert cells["weight-chat-v1"][0] == "75.0"
    text = page.inner_text("[data-testid=model-chat]")
    assert "run-381" in text and "baseline" in text and "params.lr=0.00003" in text
    canary = httpx.get(f"{gw.base}/admin/models/chat/canary", headers=auth, timeout=5)
    if canary.status_code == 200:  # issue 6's canary endpoint, when it is there
        assert cells["canary-state-chat"][0] == canary.json()["state"]
    else:
        assert "canary-none-chat" in cells


FAKE_CANARY = {
    "state": "paused",
    "step": 2,
    "weight": 10,
    "baseline": "v1",
    "candidate": "v2",
    "history": [
        {"time": 1790000000, "action": "advance", "rule": "non_inferior", "samples": 412},
        {"time": 1790000030, "action": "pause", "rule": "operator"},
    ],
}


def canary_panel(page: Any, tmp_path: Path) -> None:
    """The canary panel renders state, step, weight and history (the endpoint answered by a stub,
    since the canary API is built apart)."""
    page.route(
        re.compile(r".*/admin/models/chat/canary$"),
        lambda route: route.fulfill(status=200, json=FAKE_CANARY),
    )
    page.wait_for_selector("[data-testid=canary-state-chat]", timeout=10_000)
    cells = shown(page)
    assert cells["canary-state-chat"][0] == "paused"
    assert cells["canary-step-chat"][0] == "2" and cells["canary-weight-chat"][0] == "10"
    history = page.inner_text("[data-testid=canary-history-chat]")
    assert history.index("operator") < history.index("non_inferior")  # newest first
    assert "samples=412" in history
    page.screenshot(path=str(tmp_path / "status-page-canary.png"))
    page.unroute(re.compile(r".*/admin/models/chat/canary$"))


def screenshot(page: Any, tmp_path: Path) -> None:
    path = tmp_path / "status-page.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / "status-page.png")


def test_docs_page_in_chromium_lists_public_and_admin_routes(live_gw: Gateway) -> None:
    """`/docs` renders the OpenAPI document with nothing fetched from anywhere but the gateway."""
    chromium = require_binary("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            fetched: list[str] = []
            problems: list[str] = []
            page.on("request", lambda r: fetched.append(r.url))
            page.on("console", lambda m: problems.append(m.text) if bad_console(m) else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            assert page.goto(f"{live_gw.base}/docs").status == 200
            page.wait_for_function("() => document.getElementById('status').dataset.ready === '1'")
            ops = page.evaluate(
                "() => [...document.querySelectorAll('details.op')]"
                ".map(e => e.dataset.method + ' ' + e.dataset.path)"
            )
            for op in ("post /v1/chat/completions", "post /v1/embeddings", "get /v1/models",
                       "get /healthz", "get /admin/models", "post /admin/reload"):  # fmt: skip
                assert op in ops, (op, ops)
            page.click("details.op[data-path='/v1/chat/completions'] > summary")
            assert "x-gateway-version" in page.inner_text(
                "details.op[data-path='/v1/chat/completions']"
            )
            assert fetched and all(url.startswith(live_gw.base) for url in fetched), fetched
            assert not problems, problems
        finally:
            browser.close()
