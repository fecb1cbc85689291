"""OpenAI-compatible mock upstream: a cheap pure-ASGI fake model server for demos and tests.

`MockUpstream` (app.py) serves ``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/v1/models`` and the ``/mock/{stats,reset,config}`` controls;
`MockSettings` and the ``x-mock-fault`` grammar live in knobs.py, the counters in stats.py,
the pre-encoded OpenAI wire format in wire.py. `run` serves it under uvicorn.
"""

from gateway.mock.app import MockUpstream, run
from gateway.mock.knobs import MockSettings, parse_fault
from gateway.mock.stats import MockStats

__all__ = ["MockSettings", "MockStats", "MockUpstream", "parse_fault", "run"]
