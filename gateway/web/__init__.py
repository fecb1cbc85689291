"""The HTTP surface beside the data plane (FastAPI): `public` (models, health, readiness,
metrics), `admin` (the token-guarded admin router), `control_routes` (weights, aliases, canary),
`stats` (the live per-version stats answer), `openapi` (the published schema), `errors` (one
error shape for every route), `ui` (the status page and its session).
"""
