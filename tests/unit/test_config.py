"""Config validation: every class of problem is reported with its YAML path and line."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from gateway.cli import main
from gateway.config import load_config, parse_config
from tests.samples import ENV, GOOD, problems


def test_good_config_parses_to_frozen_models() -> None:
    cfg = parse_config(GOOD, ENV)
    chat = cfg.models["chat"]
    assert chat.routing.weights == {"v1": 90, "v2": 10}
    assert chat.versions["v1"].metadata["created"] == "2026-09-01"  # dates become ISO strings
    assert cfg.limits.max_body_bytes == 8 << 20
    with pytest.raises(pydantic.ValidationError):
        chat.routing.strategy = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "weights: {v1: 90, v2: 10}",
            "weights: {v1: 90, v3: 10}",
            "models.chat.routing.weights.v3: unknown version 'v3' (known: v1, v2) (line 12)",
        ),
        (
            "canary: v2}",
            "canary: v9}",
            "models.chat.aliases.canary: unknown version 'v9' (known: v1, v2) (line 4)",
        ),
        (
            "weights: {v1: 90, v2: 10}",
            "weights: {v1: 90, v2: -1}",
            "models.chat.routing.weights.v2: weight must be a finite number between 0 and 1000000, got -1 (line 12)",
        ),
        (
            "weights: {v1: 90, v2: 10}",
            "weights: {v1: 0, v2: 0}",
            "models.chat.routing.weights: weights are all zero: no version would get traffic (line 12)",
        ),
        (
            "weights: {v1: 90, v2: 10}",
            "weights: {v1: 90, v2: '10'}",
            "models.chat.routing.weights.v2: Input should be a valid number (got str) (line 12)",
        ),
        (
            "port: 8080",
            "port: eighty",
            "listen.port: Input should be a valid integer (got str) (line 1)",
        ),
        ("port: 8080", "port: 8080, color: red", "listen.color: unknown key (line 1)"),
        (
            '"http://127.0.0.1:9001/v1"',
            '"file:///etc/passwd"',
            "models.chat.versions.v1.upstream.url: upstream url must be http:// or https://, got 'file:///etc/passwd' (line 7)",
        ),
        (
            '"http://127.0.0.1:9001/v1"',
            '"http://user:pw@127.0.0.1:9001/v1"',
            "models.chat.versions.v1.upstream.url: upstream url must not carry credentials (use api_key_env) (line 7)",
        ),
        (
            '"http://127.0.0.1:9001/v1"',
            '"http://127.0.0.1:9001/v1?x=1"',
            "models.chat.versions.v1.upstream.url: upstream url must not have a query or fragment: 'http://127.0.0.1:9001/v1?x=1' (line 7)",
        ),
        (
            '"http://127.0.0.1:9001/v1"',
            '"http://127.0.0.1:99999/v1"',
            "models.chat.versions.v1.upstream.url: upstream url has a bad port: 'http://127.0.0.1:99999/v1' (line 7)",
        ),
        (
            ', model: "llama"}',
            "}",
            "models.chat.versions.v1.upstream.model: required key is missing (line 7)",
        ),
        (
            "stable: v1,",
            "v1: v1,",
            "models.chat.aliases.v1: alias 'v1' has the same name as a version (line 4)",
        ),
        (
            "  chat:",
            "  chat@x:",
            "models.chat@x: invalid model name 'chat@x': use letters, digits and . _ - : / (no '@', max 128) (line 3)",
        ),
    ],
)
def test_each_problem_names_path_and_line(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    assert expected in problems(GOOD.replace(old, new, 1))


def test_missing_environment_variable() -> None:
    assert problems(GOOD, env={}) == [
        "models.chat.versions.v2.upstream.api_key_env: environment variable V2_KEY is not set (line 10)"
    ]


def test_duplicate_version_id() -> None:
    text = GOOD.replace(
        "      v2:\n", "      v1:\n        upstream: {url: 'http://a/v1', model: m}\n      v2:\n"
    )
    assert problems(text) == ["models.chat.versions.v1: duplicate key (line 9)"]


def test_every_problem_is_listed_at_once() -> None:
    text = (
        GOOD.replace("v2: 10}", "v3: 10}")
        .replace("port: 8080", "port: x")
        .replace("canary: v2", "canary: v7")
    )
    found = problems(text)
    assert len(found) == 3, found


def test_weights_required_for_several_versions_without_stable() -> None:
    text = GOOD.replace("stable: v1, ", "").replace(
        "    routing:\n      weights: {v1: 90, v2: 10}\n", ""
    )
    assert problems(text) == [
        "models.chat.routing.weights: required when a model has several versions and no 'stable' alias (line 3)"
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("models: [1, 2", "invalid YAML"),
        ("", "empty document"),
        ("- a\n- b\n", "must be a mapping"),
        ("a: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
        ("models: {}\n", "models: Dictionary should have at least 1 item"),
        (
            "models: {chat: {versions: {}}}\n",
            "models.chat: a model needs at least one version (or a registry block)",
        ),
    ],
)
def test_malformed_documents(text: str, fragment: str) -> None:
    assert any(fragment in p for p in problems(text)), problems(text)


def test_alias_bomb_and_size_caps() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    assert any("more than" in p for p in problems(bomb))
    assert any("larger than" in p for p in problems("x: " + "a" * (2 << 20)))


def test_validate_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("V2_KEY", "x")
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert main(["validate", str(good)]) == 0
    out = capsys.readouterr().out
    assert "chat: versions v1, v2; aliases stable→v1, canary→v2; weighted v1=90, v2=10" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("v2: 10}", "v3: 10}"))
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "models.chat.routing.weights.v3: unknown version 'v3'" in err and "(line 12)" in err
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_shipped_example_is_valid() -> None:
    cfg = load_config(Path(__file__).parents[2] / "config" / "example.yaml", environ={})
    assert set(cfg.models["chat"].versions) == {"v1", "v2"}
