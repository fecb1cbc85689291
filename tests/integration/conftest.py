"""Shared fixtures: two mock versions of `chat` and a gateway in front of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Gateway, Mock, gateway, mock_upstream, version


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("integration")


@pytest.fixture(scope="module")
def mocks(workdir: Path) -> Iterator[tuple[Mock, Mock]]:
    with (
        mock_upstream("up-one", log_dir=workdir) as one,
        mock_upstream("up-two", "--chunks", "6", log_dir=workdir) as two,
    ):
        yield one, two


def chat_config(one: Mock, two: Mock, **routing: Any) -> dict[str, Any]:
    return {
        "models": {
            "chat": {
                "aliases": {"stable": "v1", "canary": "v2"},
                "versions": {
                    "v1": version(
                        one.url, one.model, metadata={"run_id": "run-1", "created": "2026-09-01"}
                    ),
                    "v2": {
                        **version(two.url, two.model),
                        "upstream": {
                            "url": two.url,
                            "model": two.model,
                            "api_key_env": "V2_UPSTREAM_KEY",
                        },
                    },
                },
                "routing": {"weights": {"v1": 70, "v2": 30}, **routing},
            },
        },
    }


@pytest.fixture(scope="module")
def gw(mocks: tuple[Mock, Mock], workdir: Path) -> Iterator[Gateway]:
    one, two = mocks
    # fault-injection tests here must not eject versions (ejection has its own scenarios)
    config = chat_config(
        one,
        two,
        timeouts={"ttft_s": 1.0, "idle_s": 1.0, "connect_s": 1.0},
        ejection={"enabled": False},
    )
    dead = {"upstream": {"url": "http://127.0.0.1:9/v1", "model": "nothing"}}
    config["models"]["down"] = {"versions": {"v1": dead}}
    with gateway(config, workdir, env={"V2_UPSTREAM_KEY": "sk-upstream-v2"}) as g:
        yield g
