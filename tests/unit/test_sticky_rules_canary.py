"""Sticky assignment, header rules and the canary split (pure routing, seeded)."""

from __future__ import annotations

from random import Random

import pytest
from scipy.stats import binomtest

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.routing import RequestContext, build_policy
from gateway.routing.sticky import point
from gateway.routing.table import Registry
from tests.samples import ENV, GOOD

CANARY = GOOD.replace(
    "      weights: {v1: 90, v2: 10}\n",
    """      strategy: canary
      sticky_key: header:x-session-id
      rules:
        - {match: {headers: {x-tenant: internal}}, version: v2}
      canary:
        baseline: v1
        candidate: v2
        steps:
          - {weight: 5, min_samples: 100, min_duration_s: 60, max_duration_s: 600}
          - {weight: 25, min_samples: 100, min_duration_s: 60, max_duration_s: 600}
          - {weight: 50, min_samples: 100, min_duration_s: 60, max_duration_s: 600}
""",
)


def model(text: str = CANARY):  # type: ignore[no-untyped-def]
    return parse_config(text, ENV).models["chat"]


def ctx(session: str | None = None, **headers: str) -> RequestContext:
    raw = {k.replace("_", "-").encode(): v.encode() for k, v in headers.items()}
    if session is not None:
        raw[b"x-session-id"] = session.encode()
    return RequestContext(raw, {})


def test_canary_config_parses_and_maps_to_judge_settings() -> None:
    from gateway.config.canary import canary_settings

    settings = canary_settings(model().routing.canary)
    assert (settings.baseline, settings.candidate) == ("v1", "v2")
    assert [s.weight for s in settings.steps] == [5, 25, 50]


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        (
            "candidate: v2",
            "candidate: v1",
            "routing.canary.candidate: the candidate must differ from the baseline",
        ),
        ("candidate: v2", "candidate: v9", "routing.canary.candidate: unknown version 'v9'"),
        (
            "{weight: 25,",
            "{weight: 2,",
            "routing.canary.steps.1.weight: steps must strictly increase",
        ),
        ("version: v2}", "version: v7}", "routing.rules.0.version: unknown version 'v7'"),
        (
            "sticky_key: header:x-session-id",
            "sticky_key: cookie",
            "sticky_key must be header:<name>, user or api_key",
        ),
        (
            "      canary:\n        baseline",
            "      canarx:\n        baseline",
            "strategy 'canary' needs a routing.canary block",
        ),
    ],
)
def test_canary_config_problems(old: str, new: str, fragment: str) -> None:
    assert old in CANARY
    with pytest.raises(ConfigError) as info:
        parse_config(CANARY.replace(old, new, 1), ENV)
    assert any(fragment in p for p in info.value.problems), info.value.problems


def test_split_matches_the_canary_weight_without_keys() -> None:
    policy = build_policy("chat", model(), canary_weight=25)
    rng = Random(3)
    n = 20_000
    served = sum(policy.plan(ctx(), rng).versions[0] == "v2" for _ in range(n))
    assert binomtest(served, n, 0.25).pvalue > 1e-6


def test_sticky_keys_stay_put_and_only_move_into_the_candidate() -> None:
    sessions = [f"session-{i}" for i in range(5000)]
    assignments = {}
    for weight in (5, 25, 50):
        policy = build_policy("chat", model(), canary_weight=weight)
        now = {s: policy.plan(ctx(s), Random(0)).versions[0] for s in sessions}
        again = {s: policy.plan(ctx(s), Random(99)).versions[0] for s in sessions}
        assert now == again  # unchanged weight: nobody switches
        for s, version in assignments.items():
            if version == "v2":
                assert now[s] == "v2"  # raising the weight never moves a key out
        assignments = now
        share = sum(v == "v2" for v in now.values()) / len(sessions)
        assert abs(share - weight / 100) < 0.03


def test_salt_makes_rollouts_independent() -> None:
    a = [point(b"chat:v2", f"k{i}".encode()) < 0.1 for i in range(4000)]
    b = [point(b"chat:v3", f"k{i}".encode()) < 0.1 for i in range(4000)]
    both = sum(x and y for x, y in zip(a, b, strict=True))
    assert 10 < both < 70  # ≈ 1 % of keys: independent, not the same slice


def test_rules_win_and_are_marked() -> None:
    policy = build_policy("chat", model(), canary_weight=5)
    plan = policy.plan(ctx("s1", x_tenant="internal"), Random(0))
    assert plan.versions[0] == "v2" and plan.reason == "rule"
    assert policy.plan(ctx("s1", x_tenant="other"), Random(0)).reason == "canary"


def test_weighted_with_user_stickiness() -> None:
    text = GOOD.replace("    routing:\n", "    routing:\n      sticky_key: user\n")
    policy = build_policy("chat", model(text))
    picks = {
        policy.plan(RequestContext({}, {"user": "alice"}), Random(s)).versions[0] for s in range(50)
    }
    assert len(picks) == 1


def test_a_canary_needs_no_weights_or_stable_alias() -> None:
    text = CANARY.replace("aliases: {stable: v1, canary: v2}", "aliases: {}")
    assert parse_config(text, ENV).models["chat"].routing.strategy == "canary"


THREE = CANARY.replace(
    "      v2:\n",
    '      v3:\n        upstream: {url: "http://127.0.0.1:9003/v1", model: "shadowed"}\n      v2:\n',
).replace("      rules:\n", "      shadow: {version: v3, percent: 10}\n      rules:\n")


def test_a_canary_arm_is_never_retried_on_the_other_arm() -> None:
    """Regression (issue 13): a baseline failure retried on the candidate became its evidence."""
    policy = build_policy("chat", model(), canary_weight=25)
    plans = {policy.plan(ctx(), Random(seed)).versions for seed in range(100)}
    assert plans == {("v1",), ("v2",)}


def test_retry_across_arms_is_the_operators_choice() -> None:
    text = CANARY.replace(
        "        baseline: v1\n", "        baseline: v1\n        retry_across_arms: true\n"
    )
    policy = build_policy("chat", model(text), canary_weight=25)
    plans = {policy.plan(ctx(), Random(seed)).versions for seed in range(100)}
    assert plans == {("v1", "v2"), ("v2", "v1")}


@pytest.mark.parametrize("weight", [0.0, 100.0])
def test_an_ended_canary_leaves_the_other_arm_idle(weight: float) -> None:
    text = CANARY.replace(
        "        baseline: v1\n", "        baseline: v1\n        retry_across_arms: true\n"
    )
    policy = build_policy("chat", model(text), canary_weight=weight)
    plans = {policy.plan(ctx(), Random(seed)).versions for seed in range(20)}
    assert plans == {("v1",)} if weight == 0 else {("v2",)}


def test_rule_fallbacks_skip_idle_versions() -> None:
    """A shadow-only version (weight 0) never answers a client, not even as a rule's fallback."""
    policy = build_policy("chat", model(THREE), canary_weight=5)
    plan = policy.plan(ctx("s1", x_tenant="internal"), Random(0))
    assert plan.versions[0] == "v2" and "v3" not in plan.versions


def test_explicit_fallback_drops_shadow_only_and_other_arm() -> None:
    text = THREE.replace("      rules:\n", "      fallback: [v1, v3, v2]\n      rules:\n")
    cfg = parse_config(text, ENV)
    for weight, expected in ((5.0, ()), (0.0, ())):
        entry = Registry.build(cfg, ENV, canary_weights={"chat": weight}).models["chat"]
        assert entry.fallback == expected
    across = text.replace(
        "        baseline: v1\n", "        baseline: v1\n        retry_across_arms: true\n"
    )
    entry = Registry.build(parse_config(across, ENV), ENV, canary_weights={"chat": 5.0})
    assert entry.models["chat"].fallback == ("v1", "v2")
    entry = Registry.build(parse_config(across, ENV), ENV, canary_weights={"chat": 0.0})
    assert entry.models["chat"].fallback == ("v1",)  # the rolled-back candidate stays idle


def test_a_sticky_split_names_its_session_by_a_salted_hash() -> None:
    from random import Random

    from gateway.routing.base import RequestContext
    from gateway.routing.sticky import key_getter
    from gateway.routing.weighted import WeightedPolicy

    sticky = WeightedPolicy({"v2": 10, "v1": 90}, key_getter("header:x-s"), b"salt", "canary")
    other = WeightedPolicy({"v2": 10, "v1": 90}, key_getter("header:x-s"), b"pepper", "canary")
    ctx = RequestContext({b"x-s": b"alice"}, {})
    session = sticky.session(ctx)
    assert session and session == sticky.session(ctx) and "alice" not in session
    assert session != sticky.session(RequestContext({b"x-s": b"bob"}, {}))
    assert session != other.session(ctx)  # salted per rollout, like the assignment
    assert sticky.session(RequestContext({}, {})) == ""  # keyless: its own unit
    assert WeightedPolicy({"v2": 10, "v1": 90}).session(ctx) is None  # not sticky
    assert sticky.plan(ctx, Random(0)) == sticky.plan(ctx, Random(1))
