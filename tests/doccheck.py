"""What the documentation claims, read out of the Markdown, and what the code has, read out of
the CLI parser, the config schema and the metric definitions: the drift tests compare the two."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

from gateway.cli.main import _parser
from gateway.config.reference import sections
from gateway.config.schema import GatewayConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
CODE_SPAN = re.compile(r"`([^`]+)`")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")
METRIC = re.compile(r"\bgateway_[a-z_]+[a-z]")
DOTTED = re.compile(r"[a-z_]+(\[\])?(\.[A-Za-z0-9_<>-]+(\[\])?)+")
FILE = re.compile(r"\.(py|md|ya?ml|json|html|toml|txt)$")
REPO_PATH = re.compile(r"(gateway|tests|bench|deploy|config|docs)/[\w./-]*")
SUFFIXES = ("_bucket", "_count", "_sum", "_created")


def commands(parser: argparse.ArgumentParser | None = None) -> dict[str, set[str]]:
    """Every command path of the CLI (`weights set`, `canary pause`: subcommands and the choices
    of a positional argument alike) with its option strings (`--ttl`)."""
    found: dict[str, set[str]] = {}

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        options = {o for a in p._actions for o in a.option_strings if o not in ("-h", "--help")}
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        choices = [a.choices for a in p._actions if not a.option_strings and a.choices]
        for action in subs:
            for name, child in action.choices.items():
                walk(child, f"{path} {name}".strip())
        for name in (c for group in choices if not subs for c in group):
            found[f"{path} {name}"] = options
        if not subs and not choices:
            found[path] = options

    walk(parser or _parser(), "")
    return found


def code_text(page: Path) -> str:
    """The page's code: fenced blocks and inline code spans, one per line."""
    text = page.read_text()
    fences = FENCE.findall(text)
    spans = CODE_SPAN.findall(FENCE.sub("", text))
    return "\n".join([*fences, *spans])


def documented_commands(page: Path) -> Iterator[str]:
    """`gateway …` invocations in the page's code, as the words after `gateway`."""
    for line in code_text(page).splitlines():
        line = line.strip().removeprefix("$ ")
        for match in re.finditer(r"(?:^|[;&|(]\s*)gateway ((?:[a-z][a-z-]*\s?){1,2})", line):
            yield match.group(1).strip()


def config_paths() -> list[re.Pattern[str]]:
    """A pattern per config key path (`auth.keys[].max_inflight`, `models.<model>.routing`):
    a named entry matches any name, list brackets are optional."""
    keys: set[str] = set()
    for model, paths in sections().items():
        keys.update(p for p in paths if p)  # a section itself: `models.<model>`, `auth.keys[]`
        keys.update(f"{p}.{name}".lstrip(".") for p in paths for name in model.model_fields)
    return [re.compile(r"\.".join(_segment(s) for s in key.split("."))) for key in keys]


def _segment(segment: str) -> str:
    if segment.startswith("<"):
        return r"[^.\s]+"
    name = re.escape(segment.removesuffix("[]"))
    return name + r"(\[\])?" if segment.endswith("[]") else name


def documented_config_keys(page: Path) -> Iterator[str]:
    """Inline code spans that name a dotted key from the top level (`limits.body_timeout_s`)."""
    top = set(GatewayConfig.model_fields)
    for span in CODE_SPAN.findall(FENCE.sub("", page.read_text())):
        dotted = DOTTED.fullmatch(span) and not FILE.search(span)
        if dotted and span.split(".", 1)[0].removesuffix("[]") in top:
            yield span


def exported_metrics() -> set[str]:
    """Every metric family the code defines (string literals in `gateway/observability/`)."""
    names: set[str] = set()
    for source in (ROOT / "gateway" / "observability").glob("*.py"):
        names.update(re.findall(r'"(gateway_[a-z_]+)"', source.read_text()))
    return names


def documented_metrics(page: Path) -> set[str]:
    """Metric family names the page mentions (sample suffixes removed)."""
    names = set()
    for name in METRIC.findall(page.read_text()):
        for suffix in SUFFIXES:
            name = name.removesuffix(suffix)
        names.add(name)
    return names


def repo_paths(page: Path) -> Iterator[str]:
    """Code spans of the page that name a file or folder of this repository."""
    for span in CODE_SPAN.findall(page.read_text()):
        if REPO_PATH.fullmatch(span):
            yield span


def links(page: Path) -> Iterator[tuple[Path, str]]:
    """Relative links of the page: (target file, anchor or "")."""
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        yield (page.parent / path).resolve() if path else page, anchor


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page."""
    text = FENCE.sub("", page.read_text())
    found = set()
    for heading in re.findall(r"^#+\s+(.+)$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found
