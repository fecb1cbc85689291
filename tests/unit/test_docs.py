"""The documentation cannot drift from the code: the configuration reference is generated from
the schema, and every config key carries a description."""

from __future__ import annotations

from pathlib import Path

from gateway.config.reference import BEGIN, END, render, undocumented

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_config_key_has_a_description() -> None:
    assert undocumented() == []


def test_configuration_reference_is_generated_from_the_schema() -> None:
    text = (DOCS / "configuration.md").read_text()
    generated = text.partition(BEGIN)[2].partition(END)[0].strip()
    assert generated == render().strip(), "docs/configuration.md is stale: run `make docs`"
