"""The retry budget: retries in flight stay under a share of requests in flight (Envoy-style).

A retry may start while retries in flight < max(min_retries, budget_percent % × requests in
flight), so when every version is failing the extra upstream load is bounded by the budget, not the
number of attempts a route allows. One budget per model, kept across config reloads.
"""

from __future__ import annotations

from gateway.config.routes import Retry


class RetryBudget:
    __slots__ = ("requests", "retries")

    def __init__(self) -> None:
        self.requests = 0  # client requests of this model in flight
        self.retries = 0  # retry attempts in flight

    def allows(self, retry: Retry) -> bool:
        cap = max(float(retry.min_retries), self.requests * retry.budget_percent / 100.0)
        return self.retries < cap
