"""C5: hot reload under continuous load: bad configs rejected and kept out, good ones swapped in.

Scaled down to CI from the full-size scenario (its numbers in parentheses):
- 18 valid and 17 invalid rewrites of the watched config file (full size: 5 good + 20 bad over 60 s
  at 100 rps), under closed-loop load from 2 client threads (a quarter of it streamed). Most
  go through `POST /admin/reload` right after an atomic write (temp file + rename); one valid
  and one invalid change are left to the 1 s file watcher alone, and SIGHUP is checked on an
  unchanged file (so the reload it causes is the only one possible).
- The file watcher may notice an admin-path write in the few milliseconds before the admin call
  and reload it too; the reload counters are therefore asserted to grow by 1 or 2 per admin step
  (exactly 1 for the watcher-only and SIGHUP steps).
- The property tests of the loader are unit tests (tests/unit/test_config_properties.py).
"""

from __future__ import annotations

import copy
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.resilience import (
    BackgroundLoad,
    Result,
    chat_config,
    scrape,
    send_sync,
)
from tests.support import Gateway, Mock, gateway, mock_upstream, wait_for

TOKEN_ENV = "RESILIENCE_ADMIN_TOKEN"
TOKEN = "resilience-admin-token-c5"


@pytest.fixture(scope="module")
def mocks(workdir: Path) -> Iterator[dict[str, Mock]]:
    with (
        mock_upstream("up-v1", log_dir=workdir) as one,
        mock_upstream("up-v2", log_dir=workdir) as two,
    ):
        yield {"v1": one, "v2": two}


def _valid(base: dict[str, Any], step: int) -> tuple[dict[str, Any], str]:
    """Step `step`'s good config: all traffic to v1 on even steps, to v2 on odd ones."""
    cfg = copy.deepcopy(base)
    chat = cfg["models"]["chat"]
    target = "v2" if step % 2 else "v1"
    chat["routing"]["weights"] = {"v1": 0 if step % 2 else 100, "v2": 100 if step % 2 else 0}
    chat["versions"]["v1"]["metadata"] = {"step": step}  # a new revision every time
    return cfg, target


def _invalid(base: dict[str, Any], sentinel: Path) -> list[tuple[str, Callable[[], str], str]]:
    """(name, file text, a fragment its rejection reason must contain), one per kind of bad."""

    def mutate(fn: Callable[[dict[str, Any]], None]) -> Callable[[], str]:
        def text() -> str:
            cfg = copy.deepcopy(base)
            fn(cfg)
            return yaml.safe_dump(cfg)

        return text

    def routing(cfg: dict[str, Any]) -> dict[str, Any]:
        return cfg["models"]["chat"]["routing"]  # type: ignore[no-any-return]

    def v1_url(url: str) -> Callable[[], str]:
        return mutate(lambda c: c["models"]["chat"]["versions"]["v1"]["upstream"].update(url=url))

    def weights(value: Any) -> Callable[[], str]:
        return mutate(lambda c: routing(c).update(weights=value))

    good = yaml.safe_dump(base)
    tag = f"metadata: {{x: !!python/object/apply:os.system ['touch {sentinel}']}}"
    listen = yaml.safe_dump({"listen": base["listen"]})
    return [
        ("unknown version", weights({"v1": 50, "v9": 50}), "unknown version 'v9'"),
        ("yaml syntax", lambda: good + "\nmodels: {chat: [unclosed\n", "invalid YAML"),
        ("python tag", lambda: good.replace("metadata: {}", tag, 1), "python/object"),
        ("negative weight", weights({"v1": -1, "v2": 100}), "finite number between 0 and"),
        ("weights all zero", weights({"v1": 0, "v2": 0}), "all zero"),
        ("weights not a map", weights("v1"), "weights"),
        ("unknown key", mutate(lambda c: routing(c).update(retries={})), "retries: unknown key"),
        ("unknown top-level key", mutate(lambda c: c.update(bogus=1)), "bogus: unknown key"),
        ("truncated", lambda: good[: len(good) // 2], ""),
        (
            "negative timeout",
            mutate(lambda c: routing(c).update(timeouts={"ttft_s": -1})),
            "ttft_s",
        ),
        ("duplicate key", lambda: good + listen, "duplicate key"),
        ("userinfo url", v1_url("http://user:pw@127.0.0.1:9/v1"), "credentials"),
        ("file url", v1_url("file:///etc/passwd"), "http:// or https://"),
        ("alias bomb", _alias_bomb, "alias expansion"),
        ("oversized", lambda: good + "#" + "x" * (2 << 20) + "\n", "larger than"),
        ("empty file", lambda: "", "empty document"),
    ]


def _alias_bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    return "\n".join(lines) + "\nmodels: *a6\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # atomic: the watcher sees the old file or the new one


class Admin:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.client = httpx.Client(base_url=gw.base, timeout=10)

    def reload(self) -> httpx.Response:
        return self.client.post("/admin/reload", headers={"authorization": f"Bearer {TOKEN}"})

    def probe(self) -> Result:
        result = send_sync(self.client, {"model": "chat"})
        assert result.ok, result
        return result

    def reloads(self) -> tuple[float, float]:
        m = scrape(self.gw)
        return (
            m.value("gateway_config_reloads_total", result="applied"),
            m.value("gateway_config_reloads_total", result="rejected"),
        )

    def revision(self) -> str:
        return str(self.client.get("/readyz").json()["revision"])


def test_c5_reload_under_load_rejects_bad_configs_and_swaps_good_ones_atomically(
    mocks: dict[str, Mock], workdir: Path
) -> None:
    urls = {"v1": mocks["v1"].url, "v2": mocks["v2"].url}
    start = chat_config(urls, {"v1": 100, "v2": 0}, top={"admin": {"token_env": TOKEN_ENV}})
    sentinel = workdir / "python-tag-ran"
    with gateway(start, workdir, env={TOKEN_ENV: TOKEN}) as gw:
        admin = Admin(gw)
        base = yaml.safe_load(gw.config_path.read_text())
        base["models"]["chat"]["versions"]["v1"]["metadata"] = {}
        expected = {admin.revision(): "v1"}  # revision -> the only version it routes to
        invalid = _invalid(base, sentinel)
        stream_every = 4

        def make(i: int) -> tuple[dict[str, Any], dict[str, str]]:
            return {"model": "chat", "stream": i % stream_every == 0}, {}

        with BackgroundLoad(gw.base, make, threads=2) as bg:
            step = 0
            for name, text, reason in invalid:
                # a good change through the admin API: applied at once, new weights served
                cfg, target = _valid(base, step)
                step += 1
                _write(gw.config_path, yaml.safe_dump(cfg))
                applied, rejected = admin.reloads()
                resp = admin.reload()
                assert resp.status_code == 200, resp.text
                revision = resp.json()["revision"]
                assert revision not in expected
                expected[revision] = target
                probe = admin.probe()
                assert (probe.revision, probe.version) == (revision, target)
                now_applied, now_rejected = admin.reloads()
                assert 1 <= now_applied - applied <= 2 and now_rejected == rejected

                # a bad one: 422 with reasons, the running revision and weights stay
                _write(gw.config_path, text())
                resp = admin.reload()
                assert resp.status_code == 422, (name, resp.text)
                body = resp.json()
                assert body["revision"] == revision and body["problems"], name
                assert reason in " ".join(body["problems"]), (name, body["problems"])
                probe = admin.probe()
                assert (probe.revision, probe.version) == (revision, target), name
                applied2, rejected2 = admin.reloads()
                assert applied2 == now_applied and 1 <= rejected2 - now_rejected <= 2, name
                assert scrape(gw).value("gateway_config_info", revision=revision) == 1

            # the file watcher alone: a good change is picked up, a bad one is counted and kept out
            cfg, target = _valid(base, step)
            step += 1
            applied, rejected = admin.reloads()
            _write(gw.config_path, yaml.safe_dump(cfg))
            old = admin.revision()
            wait_for(
                lambda: admin.revision() != old, 3.0, what="the watcher to apply a good config"
            )
            revision = admin.revision()
            expected[revision] = target
            probe = admin.probe()
            assert (probe.revision, probe.version) == (revision, target)
            _write(gw.config_path, invalid[0][1]())
            wait_for(lambda: admin.reloads()[1] > rejected, 3.0, what="the watcher to reject")
            assert admin.reloads() == (applied + 1, rejected + 1)
            assert admin.revision() == revision

            # SIGHUP re-reads even an unchanged file: exactly one more applied reload
            cfg, target = _valid(base, step)
            _write(gw.config_path, yaml.safe_dump(cfg))
            wait_for(lambda: admin.revision() != revision, 3.0, what="the watcher")
            revision = admin.revision()
            expected[revision] = target
            applied, rejected = admin.reloads()
            gw.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: admin.reloads()[0] == applied + 1, 3.0, what="the SIGHUP reload")
            assert admin.reloads() == (applied + 1, rejected) and admin.revision() == revision
            reloaded = time.monotonic()
            wait_for(  # traffic on the SIGHUP-reloaded config before the load stops
                lambda: sum(r.started >= reloaded for r in bg.results) >= 10,
                5.0,
                what="10 requests after the SIGHUP reload",
            )
            results = bg.stop()
        admin.client.close()
        assert "Traceback" not in gw.log()

    assert not sentinel.exists()  # the python tag was never constructed
    assert len(results) > 200
    assert [r for r in results if not r.ok] == []  # 0 client-visible errors during reloads
    assert sum(r.stream for r in results) > 20
    for r in results:  # every answer came from one config: its revision routes to its version
        assert r.revision in expected and r.version == expected[r.revision]
    assert {expected[r.revision] for r in results if r.revision} == {"v1", "v2"}


def test_c5_requests_in_flight_finish_on_the_config_they_started_with(
    mocks: dict[str, Mock], workdir: Path
) -> None:
    urls = {"v1": mocks["v1"].url, "v2": mocks["v2"].url}
    start = chat_config(urls, {"v1": 100, "v2": 0}, top={"admin": {"token_env": TOKEN_ENV}})
    with gateway(start, workdir, env={TOKEN_ENV: TOKEN}) as gw:
        admin = Admin(gw)
        before = admin.revision()
        base = yaml.safe_load(gw.config_path.read_text())
        results: list[Result] = []

        def stream() -> None:
            with httpx.Client(base_url=gw.base, timeout=10) as client:
                fault = {"x-mock-fault": "chunks:10,chunk-delay:100"}
                results.append(send_sync(client, {"model": "chat", "stream": True}, fault))

        thread = threading.Thread(target=stream)
        thread.start()
        wait_for(lambda: mocks["v1"].stats()["inflight"] > 0, 3.0, what="the stream to start")
        cfg, target = _valid(base, 1)
        assert target == "v2"
        _write(gw.config_path, yaml.safe_dump(cfg))
        resp = admin.reload()
        assert resp.status_code == 200
        after = admin.probe()
        thread.join(10)
        admin.client.close()
    (old,) = results
    assert old.ok and old.started < after.started < old.ended
    assert (old.revision, old.version) == (before, "v1")
    assert (after.revision, after.version) == (resp.json()["revision"], "v2")
