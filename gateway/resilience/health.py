"""Outlier ejection per version: eject on consecutive failures, probe, re-admit with a ramp.

Owns each version's health record and the two decisions built on it:
- `order(...)`: which of a route plan's versions may be tried now, in what order (pure given the
  table, the clock and the RNG). Ejected versions are skipped; a version whose ejection has run
  out is half-open and gets one probe request at a time; a re-admitted version ramps up linearly
  over `slow_start_s` (below its ramp it is moved behind the others, still a fallback).
- `record(...)`: what an attempt's outcome does to the record. `consecutive_failures` failures in
  a row eject for `base_s × 2^(k-1)` (k = ejections so far, capped at `max_s`, ±10 % jitter so
  replicas do not return in lockstep). The last admitted version of a model is never ejected:
  the model enters panic instead (`panic: route` ignores health, `panic: fail` answers 503 while
  letting one probe through per second), until any version succeeds again.
The clock and randomness are injected, so every timer is unit-testable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from random import Random

from gateway.config.routes import Ejection

PANIC_PROBE_INTERVAL_S = 1.0


@dataclass(slots=True)
class VersionHealth:
    failures: int = 0  # consecutive
    ejections: int = 0  # in a row, for the back-off
    ejected_until: float = 0.0
    half_open: bool = False
    probing: bool = False
    admitted_at: float | None = None  # start of the slow-start ramp
    healthy_since: float = 0.0  # last re-admission: a long healthy spell resets the back-off


@dataclass(slots=True)
class ModelHealth:
    versions: dict[str, VersionHealth]
    panic: bool = False
    panic_probe_at: float = 0.0
    troubled: int = 0  # versions not plainly healthy (fast path when 0)


class HealthTable:
    def __init__(self, clock: Callable[[], float], rng: Random) -> None:
        self._clock = clock
        self._rng = rng
        self._models: dict[str, ModelHealth] = {}
        self.on_eject: Callable[[str, str], None] = lambda model, version: None
        self.on_panic: Callable[[str, bool], None] = lambda model, on: None

    def model(self, name: str, versions: Iterable[str]) -> ModelHealth:
        entry = self._models.get(name)
        if entry is None:
            entry = self._models[name] = ModelHealth({})
        for vid in versions:
            entry.versions.setdefault(vid, VersionHealth())
        return entry

    def order(self, name: str, plan: tuple[str, ...], cfg: Ejection) -> tuple[str, ...] | None:
        """The plan's versions that may be tried now, or None for a fast 503 (panic: fail)."""
        mh = self._models.get(name) or self.model(name, plan)
        if not cfg.enabled or (mh.troubled == 0 and not mh.panic):
            return plan
        self.model(name, plan)  # versions added by a reload
        now = self._clock()
        if mh.panic:
            return self._panic_order(mh, plan, cfg, now)
        first: list[str] = []
        later: list[str] = []
        for vid in plan:
            vh = mh.versions[vid]
            if vh.ejected_until > now:
                continue
            if vh.ejected_until and not vh.half_open:
                vh.half_open = True
            if vh.half_open:
                if not vh.probing:
                    first.append(vid)
                continue
            ramp = self._ramp(mh, vh, cfg, now)
            (first if ramp >= 1.0 or self._rng.random() < ramp else later).append(vid)
        return (*first, *later)

    def begin(self, name: str, vid: str) -> bool:
        """Claim an attempt on `vid`; False if it is a half-open version already probing."""
        mh = self._models.get(name)
        vh = mh.versions.get(vid) if mh is not None else None
        if vh is None:
            vh = self.model(name, (vid,)).versions[vid]
        if vh.half_open:
            if vh.probing:
                return False
            vh.probing = True
        return True

    def record(
        self, name: str, vid: str, failed: bool | None, cfg: Ejection, known: Iterable[str] = ()
    ) -> None:
        """An attempt ended: `failed` True (upstream's fault), False (success), None (neutral).

        `known` lists all the model's versions, so ejection can tell whether others remain.
        """
        mh = self._models.get(name)
        vh = mh.versions.get(vid) if mh is not None else None
        healthy = vh is not None and not (vh.probing or vh.failures or vh.half_open)
        if failed is False and healthy and mh is not None and not mh.panic:
            return  # the common case, a healthy version succeeding again: nothing changes
        if mh is None or vh is None or failed:  # first sight, or ejection needs every version
            mh = self.model(name, (vid, *known) if failed else (vid,))
            vh = mh.versions[vid]
        was_probe, vh.probing = vh.probing, False
        if failed is None:
            return
        if not failed:
            self._success(name, mh, vh, was_probe)
            return
        if vh.ejected_until > self._clock():
            return  # already ejected (tried anyway in panic: route, or pinned): no re-ejection
        vh.failures += 1
        if cfg.enabled and (was_probe or vh.failures >= cfg.consecutive_failures):
            self._eject(name, mh, vid, vh, cfg)

    def panic(self, name: str) -> bool:
        mh = self._models.get(name)
        return bool(mh and mh.panic)

    def _success(self, name: str, mh: ModelHealth, vh: VersionHealth, was_probe: bool) -> None:
        vh.failures = 0
        if mh.panic:
            mh.panic = False
            self.on_panic(name, False)
        if was_probe or vh.half_open:
            vh.half_open = False
            vh.ejected_until = 0.0
            vh.admitted_at = vh.healthy_since = self._clock()
            self._recount(mh)

    def _eject(
        self, name: str, mh: ModelHealth, vid: str, vh: VersionHealth, cfg: Ejection
    ) -> None:
        now = self._clock()
        others = [
            v
            for k, v in mh.versions.items()
            if k != vid and v.ejected_until <= now and not v.half_open
        ]
        if not others:
            if not mh.panic:
                mh.panic = True
                mh.panic_probe_at = now + PANIC_PROBE_INTERVAL_S
                self.on_panic(name, True)
            return
        if vh.healthy_since and now - vh.healthy_since > cfg.max_s:
            vh.ejections = 0
        duration = min(cfg.base_s * 2.0**vh.ejections, cfg.max_s) * self._rng.uniform(0.9, 1.1)
        vh.ejections += 1
        vh.failures = 0
        vh.half_open = False
        vh.admitted_at = None
        vh.ejected_until = now + duration
        self._recount(mh)
        self.on_eject(name, vid)

    def _ramp(self, mh: ModelHealth, vh: VersionHealth, cfg: Ejection, now: float) -> float:
        if vh.admitted_at is None:
            return 1.0
        if cfg.slow_start_s <= 0 or now - vh.admitted_at >= cfg.slow_start_s:
            vh.admitted_at = None
            self._recount(mh)
            return 1.0
        return max(0.1, (now - vh.admitted_at) / cfg.slow_start_s)

    def _panic_order(
        self, mh: ModelHealth, plan: tuple[str, ...], cfg: Ejection, now: float
    ) -> tuple[str, ...] | None:
        if cfg.panic == "route":
            return plan
        if now < mh.panic_probe_at:
            return None
        mh.panic_probe_at = now + PANIC_PROBE_INTERVAL_S
        return plan[:1]

    def _recount(self, mh: ModelHealth) -> None:
        mh.troubled = sum(
            1 for v in mh.versions.values() if v.ejected_until or v.half_open or v.admitted_at
        )
