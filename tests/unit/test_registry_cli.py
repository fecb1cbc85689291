"""The operator's text views of the registry: `gateway registry status` and the lineage column of
`gateway status`."""

from __future__ import annotations

import time
from typing import Any

from gateway.cli.admin import registry_table, status_table


def status() -> dict[str, Any]:
    """A registry status read 12 s ago (built at call time: the table prints ages)."""
    read = time.time() - 12
    pending = {"rollout": "chat/4->5", "outcome": "rolled_back", "error": "HTTP 503", "attempts": 3}
    chat = {
        "registered_model": "chat-prod",
        "read_at": read,
        "warning": "the registry lists no routable version; kept the last ones",
        "problem": None,
        "aliases": {"champion": "4"},
        "routable": ["4"],
        "refused": {"5": "upstream http://x/v1 is outside registry.mlflow.allowed_upstreams"},
    }
    return {
        "tracking_uri": "http://mlflow:5000",
        "up": False,
        "last_sync": read,
        "last_error": "/registered-models/get: ConnectError: refused",
        "models": {"chat": chat},
        "waiting": ["embed"],
        "writeback": {"pending": {"chat": pending}, "written": {}},
    }


def test_registry_status_table_says_what_is_wrong() -> None:
    text = registry_table(status())
    assert text.splitlines()[0].startswith("registry http://mlflow:5000: DOWN, last sync 12")
    assert "last error: /registered-models/get: ConnectError" in text
    assert (
        "chat (registered chat-prod, read 12" in text and "routable 4; aliases champion→4" in text
    )
    assert "  ! the registry lists no routable version" in text
    assert "  refused 5: upstream http://x/v1 is outside" in text
    assert "embed: waiting for the registry's first answer" in text
    assert "write-back of chat/4->5 (rolled_back) failing after 3 tries: HTTP 503" in text


def test_status_table_shows_lineage_and_the_registry() -> None:
    meta = {"run_id": "d6d3c96c861c49fb", "code_version": "c0ffee1234"}
    models = [{"id": "chat", "versions": [{"version": "4", "aliases": ["champion"],
                                           "metadata": meta, "weight": 1.0}]}]  # fmt: skip
    text = status_table(models, {"chat": {"versions": {}, "registry": status()}}, {})
    assert "champion [run d6d3c96c commit c0ffee1]" in text
    assert text.splitlines()[-1].startswith("registry http://mlflow:5000: DOWN")
