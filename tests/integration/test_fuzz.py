"""SEC7 smoke: schemathesis against the published OpenAPI (client and admin APIs) of a live gateway.

Every operation gets generated (and, for negative checks, invalid) inputs; the gateway must never
answer 5xx for the gateway's own reasons, must answer only documented statuses and content
types, and must match the documented response schemas. CI runs a short pass (`FUZZ_EXAMPLES`,
default 25 per operation); `make fuzz` runs a long one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Gateway, Mock, gateway

CLIENT_KEY = "fuzz-client-key-0123456789"
ADMIN_TOKEN = "fuzz-admin-token-0123456789"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def fuzz_gw(mocks: tuple[Mock, Mock], workdir: Path) -> Iterator[Gateway]:
    one, two = mocks
    config: dict[str, Any] = {
        "admin": {"token_env": "FUZZ_ADMIN_TOKEN"},
        "auth": {
            "keys": [{"id": "fuzz", "sha256": hashlib.sha256(CLIENT_KEY.encode()).hexdigest()}]
        },
        "models": {
            "chat": {
                "aliases": {"stable": "v1"},
                "versions": {
                    "v1": {"upstream": {"url": one.url, "model": one.model}},
                    "v2": {"upstream": {"url": two.url, "model": two.model}},
                },
                "routing": {"weights": {"v1": 1, "v2": 1}},
            }
        },
    }
    with gateway(config, workdir, env={"FUZZ_ADMIN_TOKEN": ADMIN_TOKEN}) as g:
        yield g


def schemathesis_run(gw: Gateway, token: str, *selection: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{gw.base}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "1",
        "--header",
        f"Authorization: Bearer {token}",
        "--workers",
        "1",
        "--generation-deterministic",
        "--request-timeout",
        "10",
        *selection,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize("part", ["client", "admin"])
def test_openapi_conformance(fuzz_gw: Gateway, part: str) -> None:
    if part == "admin":
        result = schemathesis_run(fuzz_gw, ADMIN_TOKEN, "--include-path-regex", "^/admin")
    else:
        result = schemathesis_run(fuzz_gw, CLIENT_KEY, "--exclude-path-regex", "^/admin")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout or " passed" in result.stdout
