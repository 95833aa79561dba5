"""Pure health checks: (sample, previous sample, policy) -> findings."""
