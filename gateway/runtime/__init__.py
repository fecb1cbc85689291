"""The process's current configuration: `snapshot` (the frozen per-config `Runtime` the data path
reads), `overrides` (shared control state layered over the file config), `current` (the holder
that swaps snapshots, and readiness), `reload` (re-reading the config file)."""
