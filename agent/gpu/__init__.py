"""GPU backends: the NVML seam and the simulated fleet."""
