"""Rules: header matches that send a slice of traffic (a tenant, internal testers) to a version.

The first rule whose headers all match (names case-insensitive, values exact) decides. Requests
routed by a rule are excluded from canary analysis (their reason is `rule`). Their fallbacks are
the versions the inner policy gives a positive weight (a version of weight 0 stays idle).
"""

from __future__ import annotations

from collections.abc import Sequence
from random import Random

from gateway.config.routes import Rule
from gateway.routing.base import Policy, RequestContext, RoutePlan


class RuledPolicy:
    """Rules in front of another policy."""

    def __init__(self, rules: Sequence[Rule], inner: Policy, versions: Sequence[str]) -> None:
        self._inner = inner
        shares = inner.weights()
        live = [v for v in versions if shares.get(v, 0.0) > 0]
        self._rules = tuple(
            (
                tuple((k.lower().encode(), v.encode()) for k, v in rule.match.headers.items()),
                RoutePlan((rule.version, *(v for v in live if v != rule.version)), "rule"),
            )
            for rule in rules
        )

    def plan(self, ctx: RequestContext, rng: Random) -> RoutePlan:
        for match, plan in self._rules:
            if all(ctx.headers.get(name) == value for name, value in match):
                return plan
        return self._inner.plan(ctx, rng)

    def session(self, ctx: RequestContext) -> str | None:
        return self._inner.session(ctx)

    def weights(self) -> dict[str, float]:
        return self._inner.weights()
