"""What a token-limited key's open-ended requests reserve, per process (docs/security.md).

A request that sets no output cap (`output_cap` is None) may get an answer of any size, and the
limit learns what it used only once it is over. Reserving a fixed guess (256 tokens) let a burst
through: twelve at once fit a 3,000 tokens/minute key, and ten 2,000-token answers came back.
So each such request reserves what the key's recent open-ended answers used — the largest of its
last `REMEMBERED` in this process — and, until the key has one (cold), its open-ended requests
take turns: the next waits, first come first served, until the previous one has been settled, and
is then judged with what that one used. Cold, a key overshoots by at most one answer per process
(replica or worker); warm, only by how much an answer outgrows the recent ones, and requests
run side by side. Requests with an output cap reserve it and never wait here.
"""

from __future__ import annotations

import asyncio
from collections import deque

REMEMBERED = 8  # answers per key whose largest is the next reservation


class OpenEnded:
    """Per key: the sizes of its recent open-ended answers, and turns while it has none."""

    def __init__(self) -> None:
        self._sizes: dict[str, deque[int]] = {}
        self._turns: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}  # holder and waiters per key: the lock goes at 0

    def expected(self, key: str) -> int | None:
        """Output tokens to reserve for `key`'s next open-ended request; None while cold."""
        sizes = self._sizes.get(key)
        return max(sizes) if sizes else None

    def learn(self, key: str, completion_tokens: int) -> None:
        """An open-ended answer of `key` has been settled at `completion_tokens`."""
        sizes = self._sizes.get(key)
        if sizes is None:
            sizes = self._sizes[key] = deque(maxlen=REMEMBERED)
        sizes.append(max(1, completion_tokens))

    def waiting(self, key: str) -> int:
        """Requests of `key` waiting for their turn."""
        users = self._users.get(key, 0)
        return users - 1 if users else 0

    async def turn_or_expected(self, key: str) -> int | None:
        """The reservation for `key`'s open-ended request if it is known (no turn needed), else
        None holding the key's turn (`release` it once the request is settled). A request that
        waited for a turn while an earlier one taught the size gives the turn back at once."""
        if (known := self.expected(key)) is not None:
            return known
        await self._acquire(key)
        if (known := self.expected(key)) is not None:
            self.release(key)
        return known

    def release(self, key: str) -> None:
        self._turns[key].release()
        self._drop(key)

    async def _acquire(self, key: str) -> None:
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = asyncio.Lock()
        self._users[key] = self._users.get(key, 0) + 1
        try:
            await turn.acquire()
        except BaseException:  # cancelled while waiting (the client left, the drain deadline)
            self._drop(key)
            raise

    def _drop(self, key: str) -> None:
        users = self._users[key] - 1
        if users:
            self._users[key] = users
        else:
            del self._users[key], self._turns[key]
