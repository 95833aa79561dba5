"""Run supervision: run spec, topology-aware placement, failure decisions and the monitor loop."""
