"""One open-ended request per key at a time in this process (docs/security.md, rate limits).

A request that sets no output cap (`output_cap` is None) reserves an estimate of 256 output
tokens, but its answer may be any size: the limit learns what it used only once it is over. Two
such requests of one key in flight together could each cross the limit (a burst of eleven
2,000-token answers got through a 3,000 tokens/minute key), so a key with a token limit has at
most one in flight per process: the next waits, first come first served, until the previous one
has been settled, and is then judged against what that one used. However many a key sends at
once, it overshoots its limit by at most one answer per replica (and worker). Requests with an
output cap reserve it, cannot overshoot, and never wait here.
"""

from __future__ import annotations

import asyncio


class OpenEnded:
    """Per-key turns for open-ended requests: `acquire` before the reservation, `release` once
    the request has been settled (always, whatever happened in between)."""

    def __init__(self) -> None:
        self._turns: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}  # holder and waiters per key: the lock goes at 0

    def waiting(self, key: str) -> int:
        """Requests of `key` waiting for their turn."""
        users = self._users.get(key, 0)
        return users - 1 if users else 0

    async def acquire(self, key: str) -> None:
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = asyncio.Lock()
        self._users[key] = self._users.get(key, 0) + 1
        try:
            await turn.acquire()
        except BaseException:  # cancelled while waiting (the client left, the drain deadline)
            self._drop(key)
            raise

    def release(self, key: str) -> None:
        self._turns[key].release()
        self._drop(key)

    def _drop(self, key: str) -> None:
        users = self._users[key] - 1
        if users:
            self._users[key] = users
        else:
            del self._users[key], self._turns[key]
