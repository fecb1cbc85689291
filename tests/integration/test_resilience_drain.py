"""C6: graceful shutdown under load: SIGTERM with streams open and non-streamed traffic flowing.

Scaled down to CI from the full-size scenario (its numbers in parentheses):
- One instance (no HAProxy rolling-restart variant), `drain: {window_s: 1, deadline_s: 2}`
  (full size: a 10 s deadline), 6 long streams (300 chunks × 100 ms ≈ 30 s, as at full size) and
  3 short ones (≈ 1.5 s) open at SIGTERM, plus ~50 rps of non-streamed requests in the window
  and 3 slow non-streamed requests (1.2 s) that straddle the end of the window.
- Timing windows: readiness fails within 0.25 s of the signal; long streams are ended within
  [window + deadline - 0.1, window + deadline + 0.6] s of it; the process exits 0 within
  window + deadline + 3 s.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.resilience import (
    BackgroundLoad,
    Result,
    chat_config,
    send_sync,
)
from tests.support import gateway, mock_upstream, wait_for

WINDOW_S, DEADLINE_S = 1.0, 2.0
LONG = {"x-mock-fault": "chunks:300,chunk-delay:100"}
SHORT = {"x-mock-fault": "chunks:15,chunk-delay:100"}
SLOW = {"x-mock-fault": "latency:1200"}


def _in_thread(base: str, body: dict[str, object], headers: dict[str, str]) -> Callable[[], Result]:
    """Start one request in a thread; the returned function joins it and gives its result."""
    box: list[Result] = []

    def run() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            box.append(send_sync(client, body, headers))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result() -> Result:
        thread.join(30)
        return box[0]

    return result


def test_c6_sigterm_drains_then_ends_streams_with_server_shutdown_and_exits_0(
    workdir: Path,
) -> None:
    with mock_upstream("up-v1", log_dir=workdir) as mock:
        drain = {"window_s": WINDOW_S, "deadline_s": DEADLINE_S}
        config = chat_config({"v1": mock.url}, top={"drain": drain})
        with gateway(config, workdir) as gw:
            stream = {"model": "chat", "stream": True}
            longs = [_in_thread(gw.base, stream, LONG) for _ in range(6)]
            shorts = [_in_thread(gw.base, stream, SHORT) for _ in range(3)]
            deadline = time.monotonic() + 5
            while mock.stats()["inflight"] < 9:
                assert time.monotonic() < deadline, "streams did not start"
                time.sleep(0.01)
            bg = BackgroundLoad(gw.base, lambda i: ({"model": "chat"}, {}), pause_s=0.02)
            with bg:
                wait_for(  # traffic flowing (as 0.3 s of it did) before the signal
                    lambda: len(bg.results) >= 10, timeout=5, what="10 background requests"
                )
                gw.proc.send_signal(signal.SIGTERM)
                t0 = time.monotonic()

                # readiness fails at once and stays failed; traffic is still served
                readyz = []
                with httpx.Client(timeout=2) as probe:
                    while time.monotonic() - t0 < 0.5:
                        resp = probe.get(gw.base + "/readyz")
                        readyz.append((time.monotonic() - t0, resp.status_code))
                slow = [_in_thread(gw.base, {"model": "chat"}, SLOW) for _ in range(3)]
                time.sleep(max(0.0, t0 + WINDOW_S - 0.2 - time.monotonic()))
                window_results = bg.stop()
            # after the window the listener is closed: new connections are refused
            time.sleep(max(0.0, t0 + WINDOW_S + 0.5 - time.monotonic()))
            with httpx.Client(timeout=2) as late:
                try:
                    late.get(gw.base + "/healthz")
                    refused = False
                except httpx.ConnectError:
                    refused = True
            exit_code = gw.proc.wait(timeout=WINDOW_S + DEADLINE_S + 3)
            exited = time.monotonic() - t0
            log = gw.log()
        long_results = [r() for r in longs]
        short_results = [r() for r in shorts]
        slow_results = [r() for r in slow]
        inflight_after = _settled_inflight(mock.stats)

    first_503 = min(t for t, status in readyz if status == 503)
    print(
        "C6",
        round(first_503, 3),
        [round(r.chunk_times[-1] - t0, 3) for r in long_results],
        round(exited, 2),
        len(window_results),
    )
    assert first_503 <= 0.25 and all(s == 503 for t, s in readyz if t >= first_503)
    assert len(window_results) >= 20
    assert [r for r in window_results if not r.ok] == []  # 0 errors in the drain window
    assert all(r.ok for r in slow_results)  # in flight when the window closed: completed
    assert refused
    assert all(r.ok for r in short_results)  # finished before the deadline: complete streams
    for r in long_results:
        assert r.status == 200 and not r.done
        errors = r.error_events()
        assert len(errors) == 1 and errors[0]["code"] == "server_shutdown"
        ended = r.chunk_times[-1] - t0
        assert WINDOW_S + DEADLINE_S - 0.1 <= ended <= WINDOW_S + DEADLINE_S + 0.6
        assert len(r.events()) > 20  # it kept streaming through the drain
    assert exit_code == 0 and exited <= WINDOW_S + DEADLINE_S + 3
    assert inflight_after == 0  # the gateway closed its upstream connections
    assert "Traceback" not in log


def _settled_inflight(stats: Callable[[], dict[str, object]]) -> object:
    deadline = time.monotonic() + 2
    while True:
        value = stats()["inflight"]
        if value == 0 or time.monotonic() > deadline:
            return value
        time.sleep(0.02)
