"""Versions from a model registry (MLflow): read beside the request path, merged into the config
routing uses.

- `client`: the MLflow REST calls (async httpx), every failure a `RegistryError`;
- `view`: the registry's answer → versions, aliases, lineage and refusals (pure);
- `merge`: the file config with the view merged in, checked like a file (pure);
- `poller`: the read loop, its backoff and the status operators see; `cache`: the view on disk.

The rollout write-back (the leader's outcome tags and alias moves) lives with the canary
controller in `gateway/control/registry_writeback.py`. See docs/registry.md.
"""
