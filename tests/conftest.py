"""Suite-wide checks: after every test has run, no gateway log may contain a secret (SEC3)."""

from __future__ import annotations

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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    hits = []
    for path in GATEWAY_LOGS:
        if path.exists():
            found = leaks(path.read_text(errors="replace"))
            hits.extend(f"{path.name}: {needle[:3]}…" for needle in found)
    if hits:
        print("\nSECRET LEAK in gateway logs:\n  " + "\n  ".join(hits))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
