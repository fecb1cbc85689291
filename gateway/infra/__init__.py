"""Plumbing with no domain knowledge: the current-task lookup, the Redis client and its error
mapping, the circuit breaker, and the shared clock. Everything above may use it; it uses nothing
of the gateway but the error tree."""
