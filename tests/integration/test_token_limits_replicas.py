"""Token limits hold across two replicas on one Redis whatever the upstream reports: a key of
3,000 tokens a minute, answers of about 2,000 tokens, the official `openai` SDK at its defaults
(it asks for gzip and sets no max_tokens) on both replicas at once. The key receives at most one
request's overshoot per replica above its limit (plus what the limit refills meanwhile) for
plain, gzip-compressed and streamed answers whose upstream reports no usage, whether each
replica's requests come one after another (`paced`) or all twelve at once (`burst`, each held
300 ms by the upstream so that all are in flight before any answer is over).

Before the usage fix the compressed answers and the streams without a usage chunk were counted
as 0 tokens and charged the 256-token reservation only: eleven 2,000-token answers got through
a 3,000 tokens/minute key (22,000 tokens, 7.3 times the limit). Before uncapped requests took
turns per key (`gateway/ratelimit/openended.py`) a burst still got ten through whatever the
usage said (20,200 tokens): each reserved 256 tokens while none had reported yet."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.redis_harness import redis_server
from tests.support import Gateway, Mock, gateway, secret

LIMIT = 3000
ANSWER = 2000  # completion tokens per answer (one per word of the mock)
PER_REPLICA = 6
HOLD = "latency:300"  # burst: the upstream holds every answer until all are in flight
MODES = ("paced", "burst")
SCENARIOS = {  # x-mock-fault of the answers, stream
    "plain": (f"chunks:{ANSWER}", False),
    "gzip": (f"gzip,chunks:{ANSWER}", False),
    "stream-no-usage": (f"no-usage,chunks:{ANSWER}", True),
}
KEYS = {f"{s}-{m}": secret(f"tpm-key-{s}-{m}-4c1e9a7b") for s in SCENARIOS for m in MODES}


def config(mock: Mock, redis_url: str) -> dict[str, object]:
    return {
        "store": {"backend": "redis", "redis_url": redis_url},
        "auth": {
            "keys": [
                {
                    "id": name,
                    "sha256": hashlib.sha256(key.encode()).hexdigest(),
                    "rate_limit": {"tokens_per_minute": LIMIT},
                }
                for name, key in KEYS.items()
            ]
        },
        "logging": {"access": False},
        "models": {
            "chat": {"versions": {"v1": {"upstream": {"url": mock.url, "model": mock.model}}}}
        },
    }


@pytest.fixture(scope="module")
def replicas(mocks: tuple[Mock, Mock], workdir: Path) -> Any:
    with (
        redis_server(workdir / "tpm") as redis,
        gateway(config(mocks[0], redis.url), workdir) as one,
        gateway(config(mocks[0], redis.url), workdir) as two,
    ):
        yield one, two


def ask(client: openai.OpenAI, fault: str, stream: bool) -> int | None:
    """Tokens one request delivered (None: refused with 429)."""
    messages: Any = [{"role": "user", "content": "tell me a long story"}]
    extra = {"x-mock-fault": fault}
    try:
        if not stream:
            answer = client.chat.completions.create(
                model="chat", messages=messages, extra_headers=extra
            )
            assert answer.usage is not None
            return answer.usage.total_tokens
        chunks = client.chat.completions.create(
            model="chat", messages=messages, stream=True, extra_headers=extra
        )
        return sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    except openai.RateLimitError:
        return None


def paced(bases: list[str], key: str, fault: str, stream: bool) -> list[int | None]:
    """Each replica's requests one after another, both replicas at once."""

    def drive(base: str, out: list[int | None]) -> None:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        out.extend(ask(client, fault, stream) for _ in range(PER_REPLICA))

    return run([(drive, base) for base in bases])


def burst(bases: list[str], key: str, fault: str, stream: bool) -> list[int | None]:
    """Every request at once, alternating replicas, released together by a barrier."""
    start = threading.Barrier(PER_REPLICA * len(bases))

    def one(base: str, out: list[int | None]) -> None:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        start.wait(timeout=30)
        out.append(ask(client, f"{HOLD},{fault}", stream))

    return run([(one, base) for _ in range(PER_REPLICA) for base in bases])


def run(jobs: list[tuple[Any, str]]) -> list[int | None]:
    """Run each `job(base, out)` in its own thread; everything they delivered."""
    outs: list[list[int | None]] = [[] for _ in jobs]
    threads = [
        threading.Thread(target=j, args=(b, o)) for (j, b), o in zip(jobs, outs, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return [t for out in outs for t in out]


def tokens_counted(replica: Gateway, key_id: str) -> float:
    text = httpx.get(f"{replica.base}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gateway_tokens_total{") and f'key="{key_id}"' in line
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_token_limit_holds_across_replicas(
    replicas: tuple[Gateway, Gateway], scenario: str, mode: str
) -> None:
    fault, stream = SCENARIOS[scenario]
    key_id = f"{scenario}-{mode}"
    send = paced if mode == "paced" else burst
    started = time.monotonic()
    answers = send([r.base for r in replicas], KEYS[key_id], fault, stream)
    elapsed = time.monotonic() - started
    delivered = sum(t for t in answers if t is not None)
    refill = LIMIT * (elapsed + 1) / 60
    counted = sum(tokens_counted(r, key_id) for r in replicas)
    print(f"\n{key_id}: {answers} delivered {delivered} counted {counted} in {elapsed:.1f}s")
    assert len(answers) == 2 * PER_REPLICA and None in answers  # limited
    assert delivered >= ANSWER  # something got through
    assert delivered <= LIMIT + refill + 2 * (ANSWER + 50)  # one overshoot per replica
    assert counted >= delivered * 0.99  # the metric saw them (never 0, never a default)
