"""Running the app: `uvicorn_server` (the main listener with a graceful drain) and
`admin_listener` (the optional separate admin listener in the same process)."""
