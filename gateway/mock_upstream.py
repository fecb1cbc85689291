"""Public entry point of the mock upstream (the implementation lives in `gateway.mock`).

Re-exports `MockSettings`, `MockUpstream`, `MockStats`, `parse_fault` and `run`; see
`gateway.mock.knobs` for the ``x-mock-fault`` header grammar.
"""

from gateway.mock import MockSettings, MockStats, MockUpstream, parse_fault, run

__all__ = ["MockSettings", "MockStats", "MockUpstream", "parse_fault", "run"]
