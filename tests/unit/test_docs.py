"""The documentation cannot drift from the code: the configuration reference is generated from
the schema (every key carries a description), every CLI command and option is in docs/cli.md,
every metric family in docs/operations.md, and what any page names — a config key, a command, a
metric, a link — exists. Nothing cites a document outside this repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config.reference import BEGIN, END, render, undocumented
from tests.doccheck import (
    PAGES,
    ROOT,
    anchors,
    code_text,
    commands,
    config_paths,
    documented_commands,
    documented_config_keys,
    documented_metrics,
    exported_metrics,
    links,
    repo_paths,
)

DOCS = ROOT / "docs"
PAGE_IDS = [p.name for p in PAGES]


def test_every_config_key_has_a_description() -> None:
    assert undocumented() == []


def test_configuration_reference_is_generated_from_the_schema() -> None:
    text = (DOCS / "configuration.md").read_text()
    generated = text.partition(BEGIN)[2].partition(END)[0].strip()
    assert generated == render().strip(), "docs/configuration.md is stale: run `make docs`"


def test_every_cli_command_and_option_is_documented() -> None:
    cli = code_text(DOCS / "cli.md")
    missing = [
        f"gateway {path} {option}".strip()
        for path, options in commands().items()
        for option in ("", *sorted(options))
        if f"gateway {path}" not in cli or option not in cli
    ]
    assert missing == [], "document these in docs/cli.md"


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_documented_commands_exist(page: Path) -> None:
    paths = commands()
    unknown = [
        words
        for words in documented_commands(page)
        if " ".join(words.split()[:2]) not in paths and words.split()[0] not in paths
    ]
    assert unknown == []


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_documented_config_keys_exist(page: Path) -> None:
    patterns = config_paths()
    unknown = [k for k in documented_config_keys(page) if not any(p.fullmatch(k) for p in patterns)]
    assert unknown == []


def test_every_metric_family_is_documented() -> None:
    assert exported_metrics() - documented_metrics(DOCS / "operations.md") == set()


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_documented_metrics_exist(page: Path) -> None:
    assert documented_metrics(page) - exported_metrics() == set()


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_links_resolve(page: Path) -> None:
    broken = [
        f"{target.name}#{anchor}"
        for target, anchor in links(page)
        if not target.exists() or (anchor and anchor not in anchors(target))
    ]
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_named_repository_paths_exist(page: Path) -> None:
    assert [p for p in repo_paths(page) if not (ROOT / p).exists()] == []


def test_nothing_cites_a_document_outside_the_repository() -> None:
    pattern = re.compile(r"DESIGN(\.md| §)|test plan|shared/reference")
    sources = [
        path
        for folder in ("gateway", "tests", "bench", "docs", "deploy", "config")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in (".py", ".md", ".yaml", ".yml", ".json", ".html")
    ]
    citing = [
        str(p.relative_to(ROOT))
        for p in [*sources, ROOT / "README.md"]
        if p.name != "test_docs.py" and pattern.search(p.read_text())
    ]
    assert citing == []
