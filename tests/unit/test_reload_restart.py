"""What a reload cannot apply it says, and keeps running: the sections read at start-up only
(`listen`, `store`, `registry`, `responses`, `drain`, `logging`, `tracing`) and a few fields
(the admin token and listener, the rate limiter's `auth` settings). Rate limits a reload adds
on a Redis store are shared ones."""

from __future__ import annotations

import time
from pathlib import Path
from random import Random

import pytest

from gateway.config import parse_config
from gateway.ratelimit import LocalLimiter, SharedLimiter, build_limiter
from gateway.runtime.reload import Reloader
from tests.inproc import ENV, WITH_ADMIN, admin_app

KEY = "{id: app, sha256: " + "a" * 64 + "}"
ADMIN = "admin: {token_env: ADMIN_TOKEN}"
CHANGES = {
    "admin.listen": (ADMIN, "admin: {token_env: ADMIN_TOKEN, listen: {port: 9999}}"),
    "drain": ("", "drain: {window_s: 1}"),
    "logging": ("", "logging: {access: false}"),
    "tracing": ("", "tracing: {service_name: other}"),
    "auth.timeout_ms": ("", f"auth: {{keys: [{KEY}], timeout_ms: 500}}"),
}


@pytest.mark.parametrize("section", CHANGES)
def test_a_start_up_only_change_is_noted_and_the_running_value_kept(
    section: str, tmp_path: Path
) -> None:
    old, new = CHANGES[section]
    gw = admin_app()
    running = gw.current.runtime.config
    path = tmp_path / "gw.yaml"
    path.write_text(WITH_ADMIN.replace(old, new) if old else WITH_ADMIN + new + "\n")
    result = Reloader(gw.current, str(path), ENV).reload()
    assert result.ok, result.problems
    assert f"{section} changes need a restart (kept the running value)" in result.notes
    if "." not in section:  # a whole section: kept
        assert getattr(gw.current.runtime.config, section) == getattr(running, section)


def test_the_live_admin_fields_apply_at_once(tmp_path: Path) -> None:
    gw = admin_app()
    path = tmp_path / "gw.yaml"
    path.write_text(WITH_ADMIN.replace(ADMIN, "admin: {token_env: ADMIN_TOKEN, session_ttl_s: 60}"))
    result = Reloader(gw.current, str(path), ENV).reload()
    assert result.ok and result.notes == ()
    assert gw.current.runtime.config.admin.session_ttl_s == 60


def test_an_unchanged_reload_has_no_notes(tmp_path: Path) -> None:
    gw = admin_app()
    path = tmp_path / "gw.yaml"
    path.write_text(WITH_ADMIN)
    assert Reloader(gw.current, str(path), ENV).reload().notes == ()


def test_a_redis_store_shares_limits_even_before_any_key_is_limited() -> None:
    """Limits a reload adds must hold across replicas: the limiter is chosen at start-up."""
    redis = "store: {backend: redis, redis_url: 'redis://127.0.0.1:1/0'}\n"
    local = LocalLimiter(time.monotonic)
    for text in (WITH_ADMIN + redis, WITH_ADMIN + redis + f"auth: {{keys: [{KEY}]}}\n"):
        limiter = build_limiter(parse_config(text, ENV), ENV, Random(0), local)
        assert isinstance(limiter, SharedLimiter)
    assert build_limiter(parse_config(WITH_ADMIN, ENV), ENV, Random(0), local) is local
