"""`gateway validate` checks the file, not the shell (unset `*_env` variables warn unless
`--strict`), and the demo config ships inside the package (docs/cli.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli.main import DEMO_CONFIG, main
from gateway.config import load_config

CONFIG = """\
models:
  chat:
    versions:
      v1: {upstream: {url: "http://127.0.0.1:9001/v1", model: m, api_key_env: VALIDATE_TEST_KEY}}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("VALIDATE_TEST_KEY", raising=False)
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    return str(path)


def test_an_unset_key_variable_is_a_warning(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", config]) == 0
    out = capsys.readouterr().out
    assert "warning: environment variable VALIDATE_TEST_KEY is not set" in out
    assert "OK" in out


def test_strict_makes_it_an_error(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--strict", config]) == 1
    assert "VALIDATE_TEST_KEY is not set" in capsys.readouterr().err


def test_other_problems_still_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VALIDATE_TEST_KEY", raising=False)
    path = tmp_path / "bad.yaml"
    path.write_text(CONFIG.replace("model: m", "model: m, bogus: 1"))
    assert main(["validate", str(path)]) == 1


def test_the_demo_config_ships_in_the_package_with_the_admin_api() -> None:
    assert DEMO_CONFIG.parent.name == "cli" and DEMO_CONFIG.is_file()
    cfg = load_config(DEMO_CONFIG, {"GATEWAY_ADMIN_TOKEN": "t" * 32})
    assert cfg.admin is not None and set(cfg.models["chat"].versions) == {"v1", "v2"}
    assert cfg.models["assistant"].routing.strategy == "canary"  # the README's tour
    example = Path(__file__).parents[2] / "config" / "example.yaml"
    body = [ln for ln in example.read_text().splitlines() if not ln.startswith("#")]
    assert "\n".join(body) in DEMO_CONFIG.read_text()  # the example, a canary, the admin API
