"""Runnable examples of gpufleet-supervised workloads (not part of the installed package)."""
