"""Pure fleet logic: node lifecycle, preflight gate, fleet-level checks."""
