"""The one place redis-py is configured and its exceptions are mapped onto the gateway's tree.

Every Redis user (the metrics store, the control state, the shared rate limiter) builds its
client with `connect` and awaits every call through `bounded` (Lua scripts through `script`):
short socket and connect timeouts, no redis-py retries (callers have their own breakers), an
outer asyncio deadline, and only `StoreTimeout` / `StoreUnavailable` ever leaving this module.
The connection pool blocks: a call that finds every connection busy waits for one (within the
same deadline) instead of failing at once — a burst of more concurrent calls than connections is
not an outage. `warm` opens a client's connections and loads its scripts ahead of the first call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.exceptions
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.errors import StoreTimeout, StoreUnavailable

T = TypeVar("T")


def connect(url: str, *, cluster: bool, timeout_s: float, max_connections: int = 8) -> Any:
    """A redis-py asyncio client (a RedisCluster when `cluster`; its URL names any node)."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout_s, **options
    )
    return Redis.from_pool(pool)


async def bounded(call: Awaitable[T], timeout_s: float) -> T:
    """Await `call` within `timeout_s`, mapping every failure onto the store errors.

    redis-py can swallow a cancellation that arrives while it takes or returns a pooled
    connection (the call then returns normally, or fails, with the task still marked as being
    cancelled). A background loop that catches errors and goes round again would then never
    stop, so a cancellation requested during the call is raised here whatever the call did."""
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    try:
        async with asyncio.timeout(timeout_s):
            result = await call
    except (TimeoutError, redis.exceptions.TimeoutError):
        _reraise_cancel(task, before)
        raise StoreTimeout(f"redis did not answer within {timeout_s:g}s") from None
    except (redis.exceptions.RedisError, OSError) as exc:
        _reraise_cancel(task, before)
        raise StoreUnavailable(f"redis failed: {type(exc).__name__}") from None
    _reraise_cancel(task, before)
    return result


def _reraise_cancel(task: asyncio.Task[Any] | None, before: int) -> None:
    """Raise the CancelledError that redis-py swallowed, if the task is being cancelled."""
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError


Script = Callable[[Sequence[str], Sequence[Any]], Awaitable[Any]]


def script(client: Any, source: str, timeout_s: float) -> Script:
    """A Lua script on `client` (EVALSHA, loaded on first use), each call bounded by `timeout_s`."""
    registered = client.register_script(source)

    async def call(keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await bounded(registered(keys=list(keys), args=list(args)), timeout_s)

    return call


async def warm(client: Any, connections: int, scripts: Sequence[str], timeout_s: float) -> None:
    """Open `connections` pooled connections now (as many PINGs at once, each holding one) and
    load `scripts`, so that the first burst pays neither inside its own short budget."""
    await bounded(asyncio.gather(*(client.ping() for _ in range(connections))), timeout_s)
    for source in scripts:
        await bounded(client.script_load(source), timeout_s)


async def close(client: Any, timeout_s: float) -> None:
    """Close `client`, ignoring a Redis that is already gone."""
    with contextlib.suppress(TimeoutError, OSError, redis.exceptions.RedisError):
        await asyncio.wait_for(client.aclose(), timeout_s)
