"""Seeded Monte-Carlo operating characteristics of the canary judge (docs/canary.md, last section).

Documented traffic: 20 req/s, baseline error rate 2 %, 5 % of requests slow (the baseline's p95),
weighted-random routing, 10-second buckets and a decision at every bucket. Documented steps:
10 % / 25 % / 50 % with min_samples 500 / 1000 / 1000, min_duration 10 min and max_duration
90 / 60 / 60 min; every other setting at its default. The whole `decide` loop runs for each
canary; canaries run in lockstep so the traffic is drawn with numpy for all of them at once.
Two more checks run the e-process formulas alone, vectorized, with a look every second.

Print the summaries with: .venv/bin/pytest -s tests/unit/test_rollout_simulation.py
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pytest
from scipy import special

from gateway.canary import (
    ArmCounts,
    CanarySettings,
    Evidence,
    Step,
    current_weight,
    decide,
    initial_state,
)
from gateway.canary.stats import HARM_THETAS, EProcess, abs_prior_b, safety_thetas

RATE, P_B, SLOW, BUCKET_S = 20.0, 0.02, 0.05, 10.0
DOC = CanarySettings(
    "v1",
    "v2",
    steps=(Step(10, 500, 600, 5400), Step(25, 1000, 600, 3600), Step(50, 1000, 600, 3600)),
)
ALPHA = DOC.analysis.alpha_harm


@dataclass(frozen=True)
class Outcome:
    rule: str
    status: str
    minutes: float
    canary_requests: int


def streak(rnd: random.Random, n: int, k: int, carry: int) -> tuple[int, int]:
    """(longest run of failures in the bucket, counting the carried run; the run it ends with)."""
    if k == 0:
        return 0, 0
    if k == n:
        return carry + n, carry + n
    positions = sorted(rnd.sample(range(n), k))
    run = carry + 1 if positions[0] == 0 else 1
    best = run
    for prev, pos in pairwise(positions):
        run = run + 1 if pos == prev + 1 else 1
        best = max(best, run)
    return best, run if positions[-1] == n - 1 else 0


def simulate(
    runs: int, seed: int, theta_err: float = 1.0, theta_slow: float = 1.0, hours: float = 4.0
) -> list[Outcome | None]:
    """Run `runs` canaries of DOC until each leaves `progressing` (or the horizon ends)."""
    rng, rnd = np.random.default_rng(seed), random.Random(seed)
    states = [initial_state(DOC, 0.0) for _ in range(runs)]
    carry = [0] * runs
    outcomes: list[Outcome | None] = [None] * runs
    active = list(range(runs))
    for t in range(int(hours * 3600 / BUCKET_S)):
        if not active:
            break
        share = np.array([current_weight(DOC, states[i]) for i in active]) / 100
        n = rng.poisson(RATE * BUCKET_S, len(active))
        n_c = rng.binomial(n, share)
        n_b = n - n_c
        k_c, k_b = rng.binomial(n_c, P_B * theta_err), rng.binomial(n_b, P_B)
        s_c, s_b = rng.binomial(n_c - k_c, SLOW * theta_slow), rng.binomial(n_b - k_b, SLOW)
        columns = [a.tolist() for a in (n_c, k_c, s_c, n_b, k_b, s_b)]
        still = []
        for j, i in enumerate(active):
            nc, kc, sc, nb, kb, sb = (col[j] for col in columns)
            longest, carry[i] = streak(rnd, nc, kc, carry[i])
            ev = Evidence(
                t,
                t * BUCKET_S,
                ArmCounts(nc, kc, nc - kc, sc),
                ArmCounts(nb, kb, nb - kb, sb),
                longest,
            )
            states[i], record = decide(DOC, states[i], ev, (t + 1) * BUCKET_S)
            if record is not None and states[i].status != "progressing":
                minutes = (t + 1) * BUCKET_S / 60
                outcomes[i] = Outcome(
                    record.rule, states[i].status, minutes, states[i].total_candidate.requests
                )
            else:
                still.append(i)
        active = still
    return outcomes


def summary(title: str, outcomes: list[Outcome | None]) -> Counter[str]:
    kinds = Counter(f"{o.rule} → {o.status}" if o else "undecided" for o in outcomes)
    print(f"\n{title}: {len(outcomes)} canaries: {dict(kinds)}")
    for kind in sorted({o.rule for o in outcomes if o}):
        mins = np.array([o.minutes for o in outcomes if o and o.rule == kind])
        reqs = np.array([o.canary_requests for o in outcomes if o and o.rule == kind])
        q = np.percentile(mins, [10, 50, 90]).round(1)
        r = np.percentile(reqs, [10, 50, 90]).round(0).astype(int)
        print(f"  {kind:<22} minutes p10/p50/p90 {q}   canary requests p10/p50/p90 {r}")
    return kinds


def bound(alpha: float, runs: int) -> float:
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


@pytest.fixture(scope="module")
def equal_candidate() -> list[Outcome | None]:
    return simulate(runs=1000, seed=20240601)


def test_aa_false_rollback_within_alpha(equal_candidate: list[Outcome | None]) -> None:
    summary("A/A (equal candidate)", equal_candidate)
    rollbacks = sum(1 for o in equal_candidate if o and o.status == "rolled_back")
    assert rollbacks / len(equal_candidate) <= bound(ALPHA, len(equal_candidate))
    assert 0.005 <= rollbacks / len(equal_candidate) <= 0.04  # regression band (measured 2.0 %)
    srm = sum(1 for o in equal_candidate if o and o.rule == "srm")
    assert srm / len(equal_candidate) <= 0.02  # chi-square at 1e-4 re-run every bucket (0.8 %)


def test_equal_candidate_is_promoted(equal_candidate: list[Outcome | None]) -> None:
    promoted = [o for o in equal_candidate if o and o.status == "promoted"]
    assert len(promoted) / len(equal_candidate) >= 0.90
    minutes = np.array([o.minutes for o in promoted])
    p50, p90 = np.percentile(minutes, [50, 90])
    assert 35 <= p50 <= 55 and p90 <= 85  # regression bounds (measured ≈ 45 and 68 minutes)
    assert minutes.min() >= 30  # three steps × min_duration 10 min


@pytest.mark.parametrize(
    ("title", "theta_err", "theta_slow", "rule", "within"),
    [
        ("2x error rate", 2.0, 1.0, "harm.errors", 1500),
        ("2x slow fraction (p95 exceedance 5% → 10%)", 1.0, 2.0, "harm.latency", 1000),
    ],
)
def test_power_against_a_worse_candidate(
    title: str, theta_err: float, theta_slow: float, rule: str, within: int
) -> None:
    outcomes = simulate(runs=400, seed=7, theta_err=theta_err, theta_slow=theta_slow, hours=1.5)
    summary(title, outcomes)
    caught = [
        o for o in outcomes if o and o.status == "rolled_back" and o.canary_requests <= within
    ]
    print(f"  rolled back within {within} canary requests: {len(caught) / len(outcomes):.1%}")
    assert len(caught) / len(outcomes) >= 0.80
    assert Counter(o.rule for o in outcomes if o).most_common(1)[0][0] == rule
    assert not any(o and o.status == "promoted" for o in outcomes)


# --- the e-process formulas alone, vectorized, with a look every second -----------------------


def traffic(
    rng: np.random.Generator, runs: int, shares: np.ndarray, p_c: float
) -> tuple[np.ndarray, ...]:
    n = rng.poisson(RATE, (runs, shares.size))
    n_c = rng.binomial(n, shares)
    n_b = n - n_c
    return n_c, n_b, rng.binomial(n_c, p_c), rng.binomial(n_b, P_B)


def mixture_paths(
    n_c: np.ndarray,
    n_b: np.ndarray,
    k_c: np.ndarray,
    k_b: np.ndarray,
    thetas: tuple[float, ...],
    null: float,
) -> np.ndarray:
    """ln E_t for every run and second, in the reference's π form."""
    ok = (n_c > 0) & (n_b > 0)
    rho = np.where(ok, n_c / np.maximum(n_c + n_b, 1), 0.5)
    p0 = rho * null / (rho * null + 1 - rho)
    total = np.full(n_c.shape, -np.inf)
    for theta in thetas:
        pj = rho * theta / (rho * theta + 1 - rho)
        step = k_c * np.log(pj / p0) + k_b * np.log((1 - pj) / (1 - p0))
        total = np.logaddexp(total, np.cumsum(np.where(ok, step, 0.0), axis=1))
    return total - math.log(len(thetas))


def test_harm_e_process_is_valid_under_second_by_second_looks_and_changing_weights() -> None:
    rng = np.random.default_rng(11)
    runs, alpha = 1000, ALPHA / 2  # the per-metric level after Bonferroni
    shares = np.repeat([0.10, 0.25, 0.50], 1200)  # one hour, the weight changing twice
    n_c, n_b, k_c, k_b = traffic(rng, runs, shares, P_B)
    log_e = mixture_paths(n_c, n_b, k_c, k_b, HARM_THETAS, 1.0)
    false = float((log_e.max(axis=1) >= math.log(1 / alpha)).mean())
    code = EProcess.harm()  # the code computes the same path
    for row in zip(n_c[0].tolist(), n_b[0].tolist(), k_c[0].tolist(), k_b[0].tolist(), strict=True):
        code = code.update(*row)
    assert code.log_value() == pytest.approx(log_e[0, -1], abs=1e-9)
    # a fixed-n one-sided z-test at the same level, re-run every second, for contrast
    cum = [np.cumsum(a, axis=1) for a in (n_c, n_b, k_c, k_b)]
    pc, pb = cum[2] / np.maximum(cum[0], 1), cum[3] / np.maximum(cum[1], 1)
    pool = (cum[2] + cum[3]) / np.maximum(cum[0] + cum[1], 1)
    se = np.sqrt(pool * (1 - pool) * (1 / np.maximum(cum[0], 1) + 1 / np.maximum(cum[1], 1)))
    z = np.where(se > 0, (pc - pb) / np.where(se > 0, se, 1), 0.0)
    naive = float((z[:, 60:] > special.ndtri(1 - alpha)).any(axis=1).mean())
    print(f"\nA/A, 1 look/s for 1 h: e-process false alarm {false:.3f}, naive z-test {naive:.3f}")
    assert false <= bound(alpha, runs)
    assert naive > 3 * alpha  # why the judge does not re-run fixed-n tests


def safety_crossings(rng: np.random.Generator, runs: int, seconds: int) -> np.ndarray:
    """Whether each run's combined error-safety e-value ever reaches 1/α_safe."""
    an = DOC.analysis
    n_c, n_b, k_c, k_b = traffic(rng, runs, np.full(seconds, 0.10), P_B * an.error_margin_rel)
    rel = mixture_paths(n_c, n_b, k_c, k_b, safety_thetas(an.error_margin_rel), an.error_margin_rel)
    cn_c, cn_b, ck_c, ck_b = (np.cumsum(a, axis=1).astype(float) for a in (n_c, n_b, k_c, k_b))
    b = abs_prior_b(an.error_margin_abs)
    limit = ck_b / np.maximum(cn_b, 1) + an.error_margin_abs
    p = np.clip(np.maximum(limit, ck_c / np.maximum(cn_c, 1)), 1e-12, 1 - 1e-12)
    absolute = (
        special.betaln(1 + ck_c, b + cn_c - ck_c)
        - special.betaln(1, b)
        - ck_c * np.log(p)
        - (cn_c - ck_c) * np.log1p(-p)
    )
    combined = np.logaddexp(rel, absolute) - math.log(2)
    return combined.max(axis=1) >= math.log(1 / an.alpha_safe)


def test_error_safety_is_valid_at_the_margin() -> None:
    """A candidate exactly at the margin (p_C = 1.5 × p_B, also ≥ p_B + δ) must not be declared
    non-inferior more often than α_safe, looking every second for 90 minutes at a 10 % share."""
    rng = np.random.default_rng(12)
    crossed = np.concatenate([safety_crossings(rng, 250, 5400) for _ in range(4)])
    false = float(crossed.mean())
    print(f"\nsafety at the margin, 1 look/s for 90 min: false non-inferiority {false:.3f}")
    assert false <= bound(DOC.analysis.alpha_safe, crossed.size)
