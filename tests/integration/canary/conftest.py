"""Fixtures of the end-to-end canary tests: a private redis-server and two mock versions of
10 ms, shared by the tests of a module (helpers: `tests/canaryrig.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.redis_harness import RedisServer, redis_server
from tests.support import Mock, mock_upstream


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("canary")


@pytest.fixture(scope="module")
def redis(workdir: Path) -> Iterator[RedisServer]:
    with redis_server(workdir) as server:
        yield server


@pytest.fixture(scope="module")
def mocks(workdir: Path) -> Iterator[tuple[Mock, Mock]]:
    with ExitStack() as stack:
        yield (
            stack.enter_context(mock_upstream("base", "--latency-ms", "10", "--chunks", "2", log_dir=workdir)),
            stack.enter_context(mock_upstream("cand", "--latency-ms", "10", "--chunks", "2", log_dir=workdir)),
        )  # fmt: skip
