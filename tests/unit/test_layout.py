"""The house rules that keep the code easy to find one's way in: a handful of top-level modules,
a docstring per module saying what it owns, no `TYPE_CHECKING` back-doors around the import
layers (the layers themselves are checked by `lint-imports` in `make lint`)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"
MODULES = sorted(PACKAGE.rglob("*.py"))


def test_at_most_eight_modules_at_the_top_level() -> None:
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 8, top


def test_every_module_says_what_it_owns() -> None:
    missing = [str(p.relative_to(PACKAGE)) for p in MODULES if not ast.get_docstring(_tree(p))]
    assert missing == []


def test_no_type_checking_back_doors() -> None:
    found = [str(p.relative_to(PACKAGE)) for p in MODULES if "TYPE_CHECKING" in p.read_text()]
    assert found == []


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))
