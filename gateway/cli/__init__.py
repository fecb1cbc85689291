"""The `gateway` command line: `main` (parsing and the serve/validate/keys/mock/demo verbs) and
`admin` (the operator verbs that talk to a running gateway's admin API)."""

from gateway.cli.main import main

__all__ = ["main"]
