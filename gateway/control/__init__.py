"""Shared control state and the canary controller: what replicas agree on, and who acts.

Modules: `store` (the protocol, memory and Redis backends, key schema), `plane` (the apply loop
and the compare-and-set writes that the admin API and the canary controller share),
`controller` (drives the pure canary judge, one leader per model), `evidence` (per-bucket arm
counts read from the live-metrics snapshot), `service` (wiring it into one process).
"""
