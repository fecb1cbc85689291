"""C5 property: any mutation of a valid config loads to a valid config or a ConfigError listing
problems — never another exception, never partial state; request parsing likewise."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.config.schema import GatewayConfig
from gateway.errors import BadRequest, ConfigError
from gateway.proxy.body import parse as _parse
from tests.samples import ENV, GOOD

BASE: dict[str, Any] = yaml.safe_load(GOOD)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.just("http://evil@host/v1"),
    st.just("file:///etc/passwd"),
    st.just("!!python/object/apply:os.system ['true']"),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += paths(value, (*prefix, i))
    return out


ALL_PATHS = [p for p in paths(BASE) if p]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent: Any = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            action = draw(st.sampled_from(["set", "delete", "add"]))
            if action == "delete" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif action == "add" and isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=10))] = draw(VALUES)
            else:
                parent[path[-1]] = draw(VALUES)
        except (KeyError, IndexError, TypeError):
            continue
    text = yaml.safe_dump(doc)
    if draw(st.booleans()):  # sometimes truncate mid-write
        text = text[: draw(st.integers(0, len(text)))]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutated_configs_load_or_fail_cleanly(text: str) -> None:
    try:
        cfg = parse_config(text, ENV)
    except ConfigError as err:
        assert err.problems and all(isinstance(p, str) and p for p in err.problems)
        return
    assert isinstance(cfg, GatewayConfig)
    assert all(m.versions for m in cfg.models.values())


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        VALUES.map(
            lambda v: (
                orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS)
                if not isinstance(v, float)
                else b"1"
            )
        ),
    )
)
def test_request_parsing_never_raises_anything_but_bad_request(body: bytes) -> None:
    try:
        payload = _parse(body)
    except BadRequest:
        return
    assert isinstance(payload["model"], str) and payload["model"]


def test_python_tags_are_rejected_not_executed() -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        tagged = GOOD.replace(
            "{host: 127.0.0.1, port: 8080}", "!!python/object/apply:os.system ['true']"
        )
        parse_config(tagged, ENV)
