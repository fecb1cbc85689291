"""Shared control state: operator overrides and canary progress, applied on every replica.

Modules: `store` (the protocol, memory and Redis backends, key schema), `overrides` (layering the
stored values over the file config), `plane` (the apply loop and the compare-and-set writes that
the admin API and the canary controller share).
"""
