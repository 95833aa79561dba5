"""gpufleet controller: fleet state, lifecycle, preflight gate, placement and supervision."""
