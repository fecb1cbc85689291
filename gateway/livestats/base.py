"""The live-metrics store protocol and what goes into it: per-version, per-time-bucket counters.

A store holds, for each (model, version, bucket start), a flat map of integer counters (the same
map in memory and in a Redis hash). Field names:

    n             upstream attempts (every outcome)
    o:<outcome>   attempts by outcome class (exchange.OUTCOMES)
    l:<i>         latency histogram of successful attempts (histogram.bucket_of, in ms)
    t:<i>         time-to-first-byte histogram of successful attempts
    tp, tc        prompt / completion tokens from `usage`
    s:<ms>        successful attempts slower than <ms> (one field per configured threshold)
    u:<session>   canary evidence with a sticky key (`#canary` series only): requests of that
    x:<session>   session, and its failures; `u:-` / `x:-` count requests without a key

Per client key, the series (`#key`, <key id>) counts requests (not attempts): `n`, `o:<outcome>`,
`tp`, `tc` (what the admin API's key usage reads over the live window).

Only upstream-caused outcomes (exchange.VERSION_FAILURES) count against a version; client
errors, client cancellations and upstream 429s are counted under their own outcome and enter no
latency histogram, so clients cannot steer routing. Writes are increments (commutative, so
several processes can add to one bucket); reads return whole buckets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.exchange import OUTCOMES, SUCCESS, Attempt
from gateway.livestats.histogram import MAX_INDEX, bucket_of

BucketKey = tuple[str, str, int]  # (model, version, bucket start in shared-clock seconds)
Fields = dict[str, int]
Batch = dict[BucketKey, Fields]

REQUESTS = "n"
PROMPT_TOKENS = "tp"
COMPLETION_TOKENS = "tc"
OUTCOME = "o:"
LATENCY = "l:"
TTFT = "t:"
SLOW = "s:"
SESSION = "u:"
SESSION_FAILED = "x:"
ANALYSIS_TAG = "#canary"  # series suffix of canary-analysis attempts (also in the plain series)
RETRY_TAG = "#retry"  # series suffix of canary-split attempts that are not evidence (retries)
SHADOW_TAG = "#shadow"  # series suffix of shadow copies (only there: never the version's own)
KEY_SERIES = "#key"  # the model part of per-client-key series (model names never start with #)
OUTCOME_FIELDS = {outcome: OUTCOME + outcome for outcome in OUTCOMES}
LATENCY_FIELDS = tuple(f"{LATENCY}{i}" for i in range(MAX_INDEX + 1))
TTFT_FIELDS = tuple(f"{TTFT}{i}" for i in range(MAX_INDEX + 1))


@dataclass(frozen=True, slots=True)
class Fetched:
    """A read: the buckets that exist (missing ones are absent) and the store's clock, if any."""

    buckets: dict[BucketKey, Fields]
    server_time: float | None


class MetricsStore(Protocol):
    """Where per-bucket counters live. Every method raises `StoreError` subclasses only."""

    name: str

    async def add(self, batch: Mapping[BucketKey, Mapping[str, int]]) -> None:
        """Add every counter in `batch` to its bucket (creating it, refreshing its expiry)."""
        ...

    async def fetch(self, series: Sequence[tuple[str, str]], starts: Sequence[int]) -> Fetched:
        """The buckets of each (model, version) in `series` at each start in `starts`."""
        ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


def bucket_start(now: float, bucket_s: int) -> int:
    return int(now // bucket_s) * bucket_s


def window_starts(now: float, bucket_s: int, window_s: int) -> list[int]:
    """Starts of the buckets overlapping (now − window_s, now], oldest first."""
    last = bucket_start(now, bucket_s)
    first = bucket_start(now - window_s, bucket_s) + bucket_s
    return list(range(first, last + 1, bucket_s))


def add_session(fields: Fields, session: str, failed: bool) -> None:
    """Count one evidence request of a sticky session ("" = no key) and whether it failed."""
    name = SESSION + (session or "-")
    fields[name] = fields.get(name, 0) + 1
    if failed:
        name = SESSION_FAILED + (session or "-")
        fields[name] = fields.get(name, 0) + 1


def add_attempt(fields: Fields, attempt: Attempt, slow_ms: Sequence[int]) -> None:
    """Add one attempt to a bucket's counters: its count, its outcome, and for a success its
    latency and time-to-first-byte buckets and the slow thresholds it passed; then its tokens.
    (Field names come from tables: this runs for every attempt.)"""
    get = fields.get
    fields[REQUESTS] = get(REQUESTS, 0) + 1
    outcome = attempt.outcome
    name = OUTCOME_FIELDS.get(outcome) or OUTCOME + outcome
    fields[name] = get(name, 0) + 1
    if outcome == SUCCESS:
        duration_ms = attempt.duration * 1000.0
        name = LATENCY_FIELDS[bucket_of(duration_ms)]
        fields[name] = get(name, 0) + 1
        if attempt.ttft is not None:
            name = TTFT_FIELDS[bucket_of(attempt.ttft * 1000.0)]
            fields[name] = get(name, 0) + 1
        for threshold in slow_ms:
            if duration_ms > threshold:
                name = f"{SLOW}{threshold}"
                fields[name] = get(name, 0) + 1
    if attempt.prompt_tokens:
        fields[PROMPT_TOKENS] = get(PROMPT_TOKENS, 0) + attempt.prompt_tokens
    if attempt.completion_tokens:
        fields[COMPLETION_TOKENS] = get(COMPLETION_TOKENS, 0) + attempt.completion_tokens


def add_request(fields: Fields, outcome: str, prompt_tokens: int, completion_tokens: int) -> None:
    """Add one client request to a per-key bucket's counters."""
    get = fields.get
    fields[REQUESTS] = get(REQUESTS, 0) + 1
    name = OUTCOME_FIELDS.get(outcome) or OUTCOME + outcome
    fields[name] = get(name, 0) + 1
    if prompt_tokens:
        fields[PROMPT_TOKENS] = get(PROMPT_TOKENS, 0) + prompt_tokens
    if completion_tokens:
        fields[COMPLETION_TOKENS] = get(COMPLETION_TOKENS, 0) + completion_tokens


def key_usage(fetched: Fetched) -> dict[str, dict[str, Any]]:
    """Per key id, its requests, outcomes and tokens summed over the fetched buckets."""
    out: dict[str, dict[str, Any]] = {}
    for (model, key, _), fields in fetched.buckets.items():
        if model != KEY_SERIES:
            continue
        usage = out.setdefault(
            key, {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "outcomes": {}}
        )
        usage["requests"] += fields.get(REQUESTS, 0)
        usage["prompt_tokens"] += fields.get(PROMPT_TOKENS, 0)
        usage["completion_tokens"] += fields.get(COMPLETION_TOKENS, 0)
        outcomes = usage["outcomes"]
        for name, count in fields.items():
            if name.startswith(OUTCOME):
                outcomes[name[len(OUTCOME) :]] = outcomes.get(name[len(OUTCOME) :], 0) + count
    return out


def merge_batch(into: Batch, batch: Mapping[BucketKey, Mapping[str, int]]) -> None:
    for key, fields in batch.items():
        target = into.setdefault(key, {})
        for name, count in fields.items():
            target[name] = target.get(name, 0) + count


def attempts_in(batch: Mapping[BucketKey, Mapping[str, int]]) -> int:
    return sum(fields.get(REQUESTS, 0) for fields in batch.values())
