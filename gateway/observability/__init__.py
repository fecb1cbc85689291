"""What the gateway tells operators: Prometheus metrics and logs.

Modules: `metrics` (the metric families and the recorder the request path reports to),
`exposition` (the text-format writer), `gauges` (live-store health and per-version window
numbers, written at scrape time), `canary` (canary and shadow series), `logs` (JSON lines, the
batched access log, event lines).
"""
