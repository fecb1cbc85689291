"""Suite-wide rules: tests under `tests/integration` carry the `integration` marker (so
`make test-fast` can leave them out), and after every test has run no gateway log may contain
a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import GATEWAY_LOGS, SECRETS


def leaks(text: str) -> list[str]:
    """The secrets (or their first 8 characters) that occur in `text`."""
    found = []
    for value in SECRETS:
        for needle in {value, value[:8]}:
            if len(needle) >= 8 and needle in text:
                found.append(needle)
    return found


INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.integration)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    hits = []
    for path in GATEWAY_LOGS:
        if path.exists():
            found = leaks(path.read_text(errors="replace"))
            hits.extend(f"{path.name}: {needle[:3]}…" for needle in found)
    if hits:
        print("\nSECRET LEAK in gateway logs:\n  " + "\n  ".join(hits))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
