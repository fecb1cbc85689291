"""The runtime new requests see, and the process's readiness: `Current`.

One per process, built by the composition root and handed to everything that reads or replaces
the configuration (the data plane, the web routes, the reloader, the control plane). `swap` is
atomic (one attribute store); requests in flight keep the `Runtime` they started with.
"""

from __future__ import annotations

from gateway.runtime.snapshot import Runtime


class Current:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.ready = False  # the lifespan has started everything (the upstream client is open)
        self.draining = False  # SIGTERM seen: not ready, still serving
        self.swap(runtime)

    def swap(self, runtime: Runtime) -> None:
        """Make `runtime` the one new requests see (its metrics adopt its registry first)."""
        runtime.metrics.use_registry(runtime.registry, runtime.revision, runtime.keys.ids)
        self.runtime = runtime

    @property
    def serving(self) -> bool:
        """Ready for traffic: started, not draining, at least one model to route."""
        return self.ready and not self.draining and bool(self.runtime.registry.models)
