"""Config of the live store and of `strategy: performance`: defaults, and every problem with its line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config, parse_config
from gateway.livestats import build_sync
from tests.config_texts import PERF, problems


def test_performance_route_and_store_parse_with_defaults() -> None:
    cfg = parse_config(PERF, {})
    routing = cfg.models["chat"].routing
    assert routing.strategy == "performance" and routing.performance is not None
    assert routing.performance.objective == "ttft" and routing.performance.min_share == 0.05
    assert cfg.store.backend == "redis" and cfg.store.bucket_s == 5 and cfg.store.window_s == 60
    assert cfg.store.flush_interval_s <= 0.25 and cfg.store.refresh_interval_s <= 1.0


def test_env_overrides_the_redis_url() -> None:
    cfg = parse_config(PERF, {})
    assert cfg.store.url({}) == "redis://127.0.0.1:6399/0"
    assert cfg.store.url({"GATEWAY_REDIS_URL": "redis://10.0.0.1:1/2"}) == "redis://10.0.0.1:1/2"
    assert build_sync(cfg.store, {}, list).shared is not None


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "versions: [v1, v2, v3]",
            "versions: [v1, v9]",
            "models.chat.routing.performance.versions.1: unknown version 'v9' (known: v1, v2, v3) (line 14)",
        ),
        (
            "weights: {v3: 50}",
            "weights: {v3: 150}",
            "models.chat.routing.weights.v3: a ceiling is a percentage 0-100, got 150 (line 12)",
        ),
        (
            "weights: {v3: 50}",
            "weights: {v1: 20, v2: 20, v3: 20}",
            "models.chat.routing.weights: ceilings of the interchangeable versions sum below 100 (line 12)",
        ),
        (
            "min_share: 0.05",
            "min_share: 0.4",
            "models.chat.routing.performance.min_share: min_share 0.4 × 3 versions exceeds all traffic (line 16)",
        ),
        (
            "weights: {v3: 50}",
            "weights: {v3: 2}",
            "models.chat.routing.weights.v3: ceiling 2 is below min_share (line 12)",
        ),
        (
            "objective: ttft",
            "objective: speed",
            "models.chat.routing.performance.objective: Input should be 'latency', 'ttft', 'errors' or 'score' (line 15)",
        ),
        (
            "min_share: 0.05",
            "min_share: 0.05\n        explore: 3",
            "models.chat.routing.performance.explore: unknown key (line 17)",
        ),
        (
            "strategy: performance",
            "strategy: weighted",
            "models.chat.routing.performance: only allowed with strategy: performance (line 13)",
        ),
        (
            "redis_url: redis://127.0.0.1:6399/0",
            "redis_url: http://127.0.0.1:6399/0",
            "store.redis_url: redis_url must be redis://, rediss:// or unix:// (line 3)",
        ),
        (
            "backend: redis",
            "backend: redis\n  bucket_s: 40",
            "store: window_s must be at least two buckets (2 × bucket_s) (line 1)",
        ),
        (
            "backend: redis",
            "backend: redis\n  flush_interval_s: 1",
            "store.flush_interval_s: Input should be less than or equal to 0.25 (line 3)",
        ),
    ],
)
def test_each_problem_is_reported_with_its_line(old: str, new: str, expected: str) -> None:
    assert old in PERF
    assert expected in problems(PERF.replace(old, new))


def test_validate_summarises_a_performance_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "perf.yaml"
    path.write_text(textwrap.dedent(PERF))
    assert main(["validate", str(path)]) == 0
    assert "performance (ttft) over v1, v2, v3; ceilings v3≤50%" in capsys.readouterr().out


def test_the_shipped_performance_example_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "performance.yaml"
    cfg = load_config(example, {"GATEWAY_ADMIN_TOKEN": "x"})
    assert cfg.models["chat"].routing.strategy == "performance"
