"""Name resolution and the /v1/models descriptions."""

from __future__ import annotations

import pytest

from gateway.config import parse_config
from gateway.errors import BadRequest, ModelNotFound
from gateway.routing.table import Registry
from tests.samples import ENV, GOOD


@pytest.fixture
def registry() -> Registry:
    return Registry.build(parse_config(GOOD, ENV), ENV)


@pytest.mark.parametrize(
    ("requested", "header", "pinned"),
    [
        ("chat", None, None),
        ("chat@v2", None, "v2"),
        ("chat@stable", None, "v1"),
        ("chat", "v2", "v2"),
        ("chat", "canary", "v2"),
        ("chat@canary", "v2", "v2"),
    ],
)
def test_resolution(
    registry: Registry, requested: str, header: str | None, pinned: str | None
) -> None:
    target = registry.resolve(requested, header)
    assert target.model.name == "chat"
    assert (target.pinned.id if target.pinned else None) == pinned


def test_unknown_names(registry: Registry) -> None:
    with pytest.raises(ModelNotFound, match=r"known models: chat"):
        registry.resolve("gpt", None)
    with pytest.raises(
        ModelNotFound, match=r"no version or alias 'v9' \(known: v1, v2, canary, stable\)"
    ):
        registry.resolve("chat@v9", None)
    with pytest.raises(ModelNotFound):
        registry.resolve("chat", "v9")
    with pytest.raises(BadRequest, match="conflicting pins"):
        registry.resolve("chat@v1", "v2")


def test_versions_carry_upstream_details(registry: Registry) -> None:
    v2 = registry.models["chat"].versions["v2"]
    assert v2.upstream_model == "llama-ft2"
    assert v2.api_key == "secret"
    assert v2.urls["/v1/chat/completions"] == "http://127.0.0.1:9002/v1/chat/completions"
    assert (b"x-gateway-version", b"v2") in v2.response_headers


def test_describe(registry: Registry) -> None:
    listing = registry.describe()
    assert listing["object"] == "list"
    chat = listing["data"][0]
    assert chat["id"] == "chat" and chat["aliases"] == {"stable": "v1", "canary": "v2"}
    v1 = chat["versions"][0]
    assert v1["id"] == "chat@v1" and v1["aliases"] == ["stable"] and v1["weight"] == 0.9
    assert v1["metadata"]["params"] == {"lr": 3e-5}
    assert v1["created"] == 1788220800  # 2026-09-01T00:00Z
    assert "secret" not in str(listing) and "9001" not in str(listing)
