"""What a routing decision is: the request context a policy sees and the plan it returns.

A policy is pure and synchronous: `plan(ctx, rng)` reads only its own frozen settings, the
request context and the injected random source, and returns an ordered tuple of version ids (the
first serves; the rest are fallbacks in order) with a reason. No I/O, so it is trivially testable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from random import Random
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RoutePlan:
    versions: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What routing may look at: the raw headers (lower-case names) and the parsed body."""

    headers: Mapping[bytes, bytes]
    body: Mapping[str, object]
    client: str = ""  # the API key's id, for `sticky_key: api_key`


class Policy(Protocol):
    def plan(self, ctx: RequestContext, rng: Random) -> RoutePlan: ...

    def session(self, ctx: RequestContext) -> str | None:
        """The request's sticky session (a hash; "" without a key), None when not sticky."""
        ...

    def weights(self) -> dict[str, float]:
        """The share (0–1) of new traffic each version gets now."""
        ...
