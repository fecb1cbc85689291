"""Per-key rate limits on requests and tokens per minute.

Modules: `gcra` (the arithmetic, the in-process limiter and the `Limiter` protocol the data
plane uses), `lease` (credits a replica may spend without a round trip), `shared` (the same
limits kept atomically in Redis for every replica, with a local fallback), `fallback` (what is
logged and exported when requests are judged locally), `openended` (what a key's requests with no
output cap reserve: the size of its recent answers, taking turns until one is known).
"""

from gateway.ratelimit.fallback import FallbackReport
from gateway.ratelimit.gcra import Limiter, LocalLimiter, RateLimited, Ticket
from gateway.ratelimit.shared import SharedLimiter, build_limiter

__all__ = [
    "FallbackReport",
    "Limiter",
    "LocalLimiter",
    "RateLimited",
    "SharedLimiter",
    "Ticket",
    "build_limiter",
]
