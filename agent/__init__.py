"""gpufleet node agent: GPU/host health, checks, metrics, burn-in and rank running."""
