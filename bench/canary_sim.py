"""Operating characteristics of the canary judge, by seeded simulation (docs/canary.md, section 5).

Every run is one canary driven bucket by bucket through the real judge (`gateway.canary.decide`,
with its guardrails, incident pause, SRM, harm, safety and `on_inconclusive` rules) on the
`Evidence` the controller's evidence code hands it: per-arm counts of the same 10-second bucket,
requests and version failures, successes above the baseline's p95 (latency and TTFT), the
candidate's longest run of failures in a row, and with a sticky key the session counts
(`ArmCounts.sessions`, `failed_sessions`, `new_sessions`). Runs advance in lockstep so that
traffic is drawn with numpy for all of them at once; only `decide` runs per canary.

Traffic: Poisson arrivals at `rate` req/s split by the canary's current weight (weighted-random,
or by sticky session). Failures are Bernoulli per request (per session propensity with a sticky
key); an incident sets both versions' failure rate for a window that starts at a random time in
the first step. Latency and TTFT are lognormal (σ = 0.6): a candidate k× slower has a slow
fraction P(k·X > q95(X)) = 1 − Φ(1.645 − ln k / σ) against the baseline's 5 %. The candidate's
requests carry arrival times, so its runs of failures (the guardrail) follow the real order.

Usage: ``.venv/bin/python bench/canary_sim.py [--runs 1000] [--seed 13] [--only TEXT]
[--json PATH] [--docs docs/canary.md] [--quick]``. `--docs` rewrites the table between the
`canary_sim` markers of that page; `--quick` runs a few scenarios on few runs (what the unit test
does) and exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.stats import norm

from gateway.canary import (
    ArmCounts,
    CanarySettings,
    CanaryState,
    Evidence,
    Step,
    decide,
    initial_state,
)
from gateway.canary.judge import current_weight
from gateway.canary.settings import Analysis
from gateway.control.evidence import SnapshotEvidence
from gateway.exchange import SUCCESS, UPSTREAM_ERROR
from gateway.livestats.histogram import Histogram
from gateway.livestats.window import BucketStats, Snapshot

BUCKET_S = 10
SIGMA = 0.6  # lognormal shape of latency and TTFT
SLOW_B = 0.05  # the baseline's share above its own p95
DOC_STEPS = (Step(10, 500, 600, 5400), Step(25, 1000, 600, 3600), Step(50, 1000, 600, 3600))
DOC = CanarySettings("v1", "v2", steps=DOC_STEPS)
BEGIN, END = "<!-- canary_sim:begin -->", "<!-- canary_sim:end -->"


def slow_fraction(times_slower: float) -> float:
    """The share of a k× slower version above the baseline's p95 (lognormal, σ = SIGMA)."""
    return float(1.0 - norm.cdf(norm.ppf(1.0 - SLOW_B) - math.log(times_slower) / SIGMA))


@dataclass(frozen=True)
class Sessions:
    """Sticky sessions: a churning population with heavy-tailed sizes and failure propensity."""

    count: int = 400  # live sessions at any time
    life_s: float = 900.0  # mean session life (each ends and is replaced at this rate)
    pareto: float = 1.2  # request-rate weights ~ Pareto(shape): a few very heavy sessions
    concentration: float = 0.2  # propensity ~ Beta(c·p, c·(1−p)): small c = strong clustering
    by_session: bool = True  # the evidence carries session counts (the gateway's sticky mode)


@dataclass(frozen=True)
class Traffic:
    rate: float = 20.0
    p_b: float = 0.01
    p_c: float | None = None  # None: the same as the baseline
    slower: float = 1.0  # candidate latency multiplier
    ttft_slower: float = 1.0
    share_factor: float = 1.0  # the candidate really gets this × its configured share (SRM)
    incident: tuple[float, float] | None = None  # (seconds, failure rate) on both versions
    sessions: Sessions | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    group: str
    traffic: Traffic
    settings: CanarySettings = DOC
    hours: float = 4.0
    quote: str = "rolled_back"  # what the quoted rate counts: an outcome status or a rule
    bound: str = "alpha_harm"  # ≤ that level + 3 SE, or "power:x" (≥ x), or "" (reported)
    within_s: float | None = None  # count only outcomes within this time
    through_store: bool = False  # via the live-store snapshot and SnapshotEvidence (slower)


@dataclass
class Outcome:
    status: str
    rule: str
    seconds: float


@dataclass
class Lane:
    """The numpy side of one scenario: per-run carried values between buckets."""

    runs: int
    rng: np.random.Generator
    incident_start: np.ndarray
    carry: np.ndarray
    session: dict[str, np.ndarray] = field(default_factory=dict)


# --- traffic, one bucket for the active runs --------------------------------------------------


def _streaks(fails: np.ndarray, valid: np.ndarray, carry: np.ndarray) -> tuple[np.ndarray, ...]:
    """(longest run of failures in the bucket counting the carried run, the run it ends with)."""
    pos = np.arange(fails.shape[1])
    breaks = np.where(valid & ~fails, pos, -1)
    last = np.maximum.accumulate(breaks, axis=1)
    runs = np.where(last >= 0, pos - last, pos + 1 + carry[:, None])
    longest = np.where(fails, runs, 0).max(axis=1, initial=0)
    n = valid.sum(axis=1)
    idx = np.maximum(n - 1, 0)
    end = np.where(fails[np.arange(len(n)), idx], runs[np.arange(len(n)), idx], 0)
    return longest, np.where(n > 0, end, carry)


def _rates(t: Traffic, lane: Lane, rows: np.ndarray, times: np.ndarray, cand: bool) -> np.ndarray:
    base = (t.p_c if t.p_c is not None else t.p_b) if cand else t.p_b
    out = np.full(times.shape, base)
    if t.incident is not None:
        start = lane.incident_start[rows][:, None]
        inside = (times >= start) & (times < start + t.incident[0])
        out = np.where(inside, t.incident[1], out)
    return out


def _latency(rng: np.random.Generator, t: Traffic, ok: np.ndarray, cand: bool) -> list[np.ndarray]:
    slow = slow_fraction(t.slower) if cand else SLOW_B
    ttft = slow_fraction(t.ttft_slower) if cand else SLOW_B
    return [rng.binomial(ok, slow), rng.binomial(ok, ttft)]


def draw_bucket(t: Traffic, lane: Lane, rows: np.ndarray, share: np.ndarray, t0: float) -> dict:
    """Counts for the active `rows` in the bucket starting at `t0` (seconds since the start)."""
    if t.sessions is not None:
        return _draw_sessions(t, lane, rows, share)
    rng, a = lane.rng, len(rows)
    share = np.clip(share * t.share_factor, 0.0, 1.0)
    sec = t0 + np.arange(BUCKET_S)[None, :] + 0.5
    n_b = rng.poisson(t.rate * (1.0 - share)[:, None], (a, BUCKET_S))
    k_b = rng.binomial(n_b, _rates(t, lane, rows, np.broadcast_to(sec, n_b.shape), False))
    n_c = rng.poisson(t.rate * share * BUCKET_S)
    width = max(int(n_c.max(initial=0)), 1)
    times = t0 + np.sort(rng.uniform(0, BUCKET_S, (a, width)), axis=1)
    valid = np.arange(width)[None, :] < n_c[:, None]
    fails = (rng.random((a, width)) < _rates(t, lane, rows, times, True)) & valid
    longest, lane.carry[rows] = _streaks(fails, valid, lane.carry[rows])
    k_c = fails.sum(axis=1)
    n_b, k_b = n_b.sum(axis=1), k_b.sum(axis=1)
    return {
        "c": [n_c, k_c, *_latency(rng, t, n_c - k_c, True)],
        "b": [n_b, k_b, *_latency(rng, t, n_b - k_b, False)],
        "streak": longest,
    }


def _new_sessions(lane: Lane, s: Sessions, p_b: float, shape: tuple[int, int]) -> dict:
    rng = lane.rng
    weight = rng.pareto(s.pareto, shape) + 1.0
    q = rng.beta(s.concentration * p_b, s.concentration * (1.0 - p_b), shape) if p_b > 0 else 0.0
    return {"weight": weight, "q": np.broadcast_to(q, shape).copy(), "u": rng.random(shape)}


def _draw_sessions(t: Traffic, lane: Lane, rows: np.ndarray, share: np.ndarray) -> dict:
    s, rng, st = t.sessions, lane.rng, lane.session
    assert s is not None
    a = len(rows)
    if not st:
        st.update(_new_sessions(lane, s, t.p_b, (lane.runs, s.count)))
        st["seen"] = np.zeros((lane.runs, s.count), bool)
    ended = rng.random((a, s.count)) < BUCKET_S / s.life_s  # replaced by fresh sessions
    fresh = _new_sessions(lane, s, t.p_b, (a, s.count))
    for key in ("weight", "q", "u"):
        st[key][rows] = np.where(ended, fresh[key], st[key][rows])
    st["seen"][rows] &= ~ended
    weight, q, u = st["weight"][rows], st["q"][rows], st["u"][rows]
    rate = t.rate * weight / weight.sum(axis=1, keepdims=True)
    n = rng.poisson(rate * BUCKET_S)
    cand = u < np.clip(share * t.share_factor, 0, 1)[:, None]  # sticky: moves only into the canary
    mult = (t.p_c / t.p_b) if (t.p_c is not None and t.p_b > 0) else 1.0
    k = rng.binomial(n, np.where(cand, np.minimum(q * mult, 1.0), q))
    new = (n > 0) & ~st["seen"][rows]  # first seen now: each session counts once, here
    st["seen"][rows] |= n > 0
    out: dict = {}
    for arm, mask in (("c", cand), ("b", ~cand)):
        n_arm, k_arm = (n * mask).sum(axis=1), (k * mask).sum(axis=1)
        counts = [n_arm, k_arm, *_latency(rng, t, n_arm - k_arm, arm == "c")]
        out[arm] = [*counts, (new & mask).sum(axis=1), (new & (k > 0) & mask).sum(axis=1)]
    width = max(int(out["c"][0].max(initial=0)), 1)
    valid = np.arange(width)[None, :] < out["c"][0][:, None]
    p = out["c"][1] / np.maximum(out["c"][0], 1)
    fails = (rng.random((a, width)) < p[:, None]) & valid  # failures in random order
    carried = lane.carry[rows]
    longest, lane.carry[rows] = _streaks(fails, valid, carried)
    if s.by_session:  # a run counts distinct sessions: bounded by the failing ones (+ carried)
        failing = ((k > 0) & cand).sum(axis=1)
        longest = np.minimum(longest, failing + carried)
        lane.carry[rows] = np.minimum(lane.carry[rows], failing + carried)
    out["streak"] = longest
    return out


def _arm(cols: list[np.ndarray], j: int, sessions: bool) -> ArmCounts:
    n, k, slow, ttft = (int(c[j]) for c in cols[:4])
    if not sessions:
        return ArmCounts(n, k, n - k, slow, n - k, ttft)
    new, failed = (int(c[j]) for c in cols[4:6])
    return ArmCounts(n, k, n - k, slow, n - k, ttft, new, failed)


# --- the judge, run by run --------------------------------------------------------------------


def _final(state: CanaryState) -> bool:
    """Where a run ends: promoted, rolled back, or paused for a human (not for an incident)."""
    done = state.status in ("promoted", "rolled_back")
    return done or state.pause_reason not in (None, "incident")


def simulate(sc: Scenario, runs: int, seed: int) -> list[Outcome | None]:
    """Every run's outcome: the first terminal status, or a pause other than an incident."""
    settings, t = sc.settings, sc.traffic
    rng = np.random.default_rng(seed)
    lane = Lane(runs, rng, rng.uniform(120, 420, runs), np.zeros(runs, np.int64))
    states = [initial_state(settings, 0.0) for _ in range(runs)]
    outcomes: list[Outcome | None] = [None] * runs
    active = np.arange(runs)
    by_session = t.sessions is not None and t.sessions.by_session
    for b in range(int(sc.hours * 3600 / BUCKET_S)):
        if not len(active):
            break
        share = np.array([current_weight(settings, states[i]) for i in active]) / 100.0
        counts = draw_bucket(t, lane, active, share, b * BUCKET_S)
        cols_c = [c.tolist() for c in counts["c"]]
        cols_b = [c.tolist() for c in counts["b"]]
        streak = counts["streak"].tolist()
        still = []
        for j, i in enumerate(active.tolist()):
            ev = Evidence(
                b,
                float(b * BUCKET_S),
                _arm(cols_c, j, by_session),
                _arm(cols_b, j, by_session),
                streak[j],
                sessions=by_session,
            )
            states[i], record = decide(settings, states[i], ev, float((b + 1) * BUCKET_S))
            if record is not None and _final(states[i]):
                outcomes[i] = Outcome(states[i].status, record.rule, (b + 1) * BUCKET_S)
            else:
                still.append(i)
        active = np.array(still, dtype=np.int64)
    return outcomes


# --- the same canaries through the controller's evidence code (a cross-check) -----------------

WINDOW_BUCKETS = 60  # the live store's window: 10 minutes of 10-second buckets
SETTLE_S = 1.0


def _store_bucket(rng: np.random.Generator, start: int, n: int, p: float, slower: float,
                  ttft_slower: float) -> BucketStats:  # fmt: skip
    """One arm's live-store bucket: outcomes, and lognormal latency / TTFT histograms (ms)."""
    failures = int(rng.binomial(n, p))
    ok = n - failures
    latency = 1000.0 * slower * rng.lognormal(0.0, SIGMA, ok)
    ttft = 200.0 * ttft_slower * rng.lognormal(0.0, SIGMA, ok)
    outcomes = {SUCCESS: ok, UPSTREAM_ERROR: failures}
    return BucketStats(start, n, outcomes, Histogram.of(latency), Histogram.of(ttft))


def simulate_evidence(sc: Scenario, runs: int, seed: int) -> list[Outcome | None]:
    """Like `simulate`, one canary at a time, but each bucket goes into a live-store snapshot
    (per-arm outcome counts and latency/TTFT histograms) that `SnapshotEvidence` turns into the
    judge's input, slow thresholds from the baseline's earlier buckets included."""
    settings, t = sc.settings, sc.traffic
    rng = np.random.default_rng(seed)
    p_c = t.p_c if t.p_c is not None else t.p_b
    outcomes: list[Outcome | None] = [None] * runs
    for i in range(runs):
        state = initial_state(settings, 0.0)
        series: dict[str, list[BucketStats]] = {"v1#canary": [], "v2#canary": []}
        for b in range(int(sc.hours * 3600 / BUCKET_S)):
            share = current_weight(settings, state) / 100.0 * t.share_factor
            n = int(rng.poisson(t.rate * BUCKET_S))
            n_c = int(rng.binomial(n, min(share, 1.0)))
            start = b * BUCKET_S
            cand = _store_bucket(rng, start, n_c, p_c, t.slower, t.ttft_slower)
            base = _store_bucket(rng, start, n - n_c, t.p_b, 1.0, 1.0)
            for name, bucket in (("v2#canary", cand), ("v1#canary", base)):
                series[name] = [*series[name][-WINDOW_BUCKETS:], bucket]
            now = float((b + 1) * BUCKET_S)
            snap = Snapshot(now + SETTLE_S, 0.0, "memory", BUCKET_S, 600, {"m": dict(series)})
            source = SnapshotEvidence(lambda snap=snap: snap, BUCKET_S, SETTLE_S)  # type: ignore[misc]
            record = None
            for ev in source.buckets("m", settings, BUCKET_S, state.cursor):
                state, record = decide(settings, state, ev, now)
                if record is not None:
                    break
            if record is not None and _final(state):
                outcomes[i] = Outcome(state.status, record.rule, now)
                break
    return outcomes


# --- scenarios --------------------------------------------------------------------------------


def _settings(**changes: object) -> CanarySettings:
    return replace(DOC, **changes)  # type: ignore[arg-type]


ONE_STEP = (Step(50, 57, 0, 3600),)  # the loosest floors `validate` accepts (srm_floor at 50 %)
ABS = Analysis(metric="none")


def scenarios() -> list[Scenario]:
    sticky = Sessions()
    return [
        Scenario("A/A, 0 % errors", "A/A", Traffic(p_b=0.0)),
        Scenario("A/A, 1 % errors", "A/A", Traffic(p_b=0.01)),
        Scenario("A/A, 2 % errors", "A/A", Traffic(p_b=0.02)),
        Scenario(
            "A/A, 1 % errors, on_inconclusive: rollback",
            "A/A",
            Traffic(p_b=0.01),
            _settings(on_inconclusive="rollback"),
            bound="",
        ),
        Scenario(
            "SRM false freezes (A/A, 1 % errors)",
            "A/A",
            Traffic(p_b=0.01),
            quote="srm",
            bound="srm_alpha",
        ),
        Scenario("errors 2× (2 % → 4 %)", "power", Traffic(p_b=0.02, p_c=0.04), bound="power:0.95"),
        Scenario("errors 5× (2 % → 10 %)", "power", Traffic(p_b=0.02, p_c=0.10), bound="power:1"),
        Scenario("latency 1.5×", "power", Traffic(slower=1.5), bound="power:1"),
        Scenario("latency 2×", "power", Traffic(slower=2.0), bound="power:1"),
        Scenario("TTFT 2× (latency unchanged)", "power", Traffic(ttft_slower=2.0), bound="power:1"),
        Scenario("incident: both 100 % for 30 s", "incident", Traffic(incident=(30, 1.0))),
        Scenario("incident: both 50 % for 60 s", "incident", Traffic(incident=(60, 0.5))),
        Scenario("incident: both 20 % for 5 min", "incident", Traffic(incident=(300, 0.2))),
        Scenario(
            "on margin, one 50 % step, floors 57 / 0 s: p_B 1 %, p_C 1.5 %",
            "margin",
            Traffic(p_b=0.01, p_c=0.015),
            _settings(steps=ONE_STEP, analysis=ABS),
            hours=1.0,
            quote="promoted",
            bound="alpha_safe",
        ),
        Scenario(
            "on margin, one 50 % step, floors 57 / 0 s: p_B 0.2 %, p_C 0.7 %",
            "margin",
            Traffic(p_b=0.002, p_c=0.007),
            _settings(steps=ONE_STEP, analysis=ABS),
            hours=1.0,
            quote="promoted",
            bound="alpha_safe",
        ),
        Scenario(
            "on margin, documented steps: p_B 0.2 %, p_C 0.7 %",
            "margin",
            Traffic(p_b=0.002, p_c=0.007),
            quote="promoted",
            bound="alpha_safe",
        ),
        Scenario(
            "SRM: candidate gets half its share, frozen within 70 s",
            "srm",
            Traffic(share_factor=0.5),
            hours=0.25,
            quote="srm",
            bound="power:0.95",
            within_s=70,  # the first 10 s bucket straddles the step change: not counted
        ),
        Scenario(
            "cross-check through the evidence code: A/A, 1 % errors",
            "evidence",
            Traffic(p_b=0.01),
            through_store=True,
        ),
        Scenario(
            "cross-check through the evidence code: latency 1.5×",
            "evidence",
            Traffic(slower=1.5),
            hours=1.0,
            bound="power:1",
            through_store=True,
        ),
        Scenario(
            "cross-check through the evidence code: TTFT 2×",
            "evidence",
            Traffic(ttft_slower=2.0),
            hours=1.0,
            bound="power:1",
            through_store=True,
        ),
        Scenario(
            "sticky sessions (400, heavy-tailed), judged by session",
            "sticky",
            Traffic(p_b=0.01, sessions=sticky),
        ),
        Scenario(
            "sticky sessions, SRM by session: false freezes",
            "sticky",
            Traffic(p_b=0.01, sessions=sticky),
            quote="srm",
            bound="srm_alpha",
        ),
        Scenario(
            "sticky sessions, judged by request (no session counts)",
            "sticky",
            Traffic(p_b=0.01, sessions=replace(sticky, by_session=False)),
            bound="",
        ),
    ]


EVIDENCE_RUNS = 200  # the cross-check rows: one canary at a time through the evidence code

QUICK = (
    "A/A, 1 % errors",
    "errors 5× (2 % → 10 %)",
    "incident: both 100 % for 30 s",
    "SRM: candidate gets half its share, frozen within 70 s",
    "sticky sessions (400, heavy-tailed), judged by session",
)


# --- summary ----------------------------------------------------------------------------------


def level(sc: Scenario) -> float:
    an = sc.settings.analysis
    return {"alpha_harm": an.alpha_harm, "alpha_safe": an.alpha_safe}.get(
        sc.bound, sc.settings.srm_alpha
    )


def summarize(sc: Scenario, outcomes: Sequence[Outcome | None], seconds: float) -> dict:
    n = len(outcomes)
    hit = [
        o
        for o in outcomes
        if o is not None
        and sc.quote in (o.status, o.rule)
        and (sc.within_s is None or o.seconds <= sc.within_s)
    ]
    rate = len(hit) / n
    se = math.sqrt(max(rate * (1 - rate), 1.0 / n) / n)  # never 0: one event's worth
    minutes = [o.seconds / 60 for o in hit]
    row = {
        "scenario": sc.name,
        "group": sc.group,
        "runs": n,
        "quoted": sc.quote if sc.within_s is None else f"{sc.quote} ≤ {sc.within_s:g} s",
        "rate": rate,
        "se": se,
        "median_min": float(np.median(minutes)) if minutes else None,
        "outcomes": dict(Counter(f"{o.rule}→{o.status}" if o else "undecided" for o in outcomes)),
        "cpu_s": round(seconds, 1),
    }
    row.update(check(sc, rate, n))
    return row


def check(sc: Scenario, rate: float, n: int) -> dict:
    """The target and whether the measured rate meets it (3 standard errors of tolerance)."""
    if not sc.bound:
        return {"target": "reported", "ok": True}
    if sc.bound.startswith("power:"):
        want = float(sc.bound.split(":")[1])
        slack = 3 * math.sqrt(max(want * (1 - want), 0.25 / n) / n)
        return {"target": f"≥ {want:.0%}", "ok": rate >= want - slack}
    alpha = level(sc)
    limit = alpha + 3 * math.sqrt(alpha * (1 - alpha) / n)
    return {"target": f"≤ {sc.bound} + 3 SE = {limit:.2%}", "ok": rate <= limit}


def table(rows: Sequence[dict], command: str) -> str:
    lines = [
        f"Produced by `{command}` (seed and runs in the command; every rate ± one standard error).",
        "",
        "| scenario | runs | counts | rate ± SE | target | met | median min | how runs ended |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        med = "—" if r["median_min"] is None else f"{r['median_min']:.1f}"
        ends = sorted(r["outcomes"].items(), key=lambda kv: -kv[1])[:3]
        how = ", ".join(f"{k} {v / r['runs']:.1%}" for k, v in ends)
        lines.append(
            f"| {r['scenario']} | {r['runs']} | {r['quoted']} | {r['rate']:.2%} ± {r['se']:.2%}"
            f" | {r['target']} | {'yes' if r['ok'] else '**no**'} | {med} | {how} |"
        )
    return "\n".join(lines)


def write_docs(path: Path, block: str) -> None:
    text = path.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--only", default="", help="run the scenarios whose name contains this")
    ap.add_argument("--quick", action="store_true", help="five scenarios, 200 runs each")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--docs", type=Path, help="rewrite the canary_sim block of this page")
    args = ap.parse_args(argv)
    runs = 200 if args.quick and args.runs == 1000 else args.runs
    chosen = [
        (k, sc)
        for k, sc in enumerate(scenarios())
        if args.only in sc.name and (not args.quick or sc.name in QUICK)
    ]
    rows = []
    for k, sc in chosen:  # each scenario's seed depends on its place in the full list only
        began = time.process_time()
        run = simulate_evidence if sc.through_store else simulate
        n = min(runs, EVIDENCE_RUNS) if sc.through_store else runs
        outcomes = run(sc, n, args.seed + 1000 * k)
        rows.append(summarize(sc, outcomes, time.process_time() - began))
        r = rows[-1]
        print(
            f"{sc.name:<62} {r['rate']:7.2%} ± {r['se']:.2%}  {r['target']:<28}"
            f" {'ok' if r['ok'] else 'FAILED'}  ({r['cpu_s']} s) {r['outcomes']}",
            flush=True,
        )
    command = "python bench/canary_sim.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.docs:
        write_docs(args.docs, table(rows, command.strip()))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
